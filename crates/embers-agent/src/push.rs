//! A window as a Pyroscope `PushRequest`: the wire format of `push.v1.PusherService/Push`,
//! which Grafana Pyroscope and Embers both accept. One series (`__name__="process_cpu"`,
//! `service_name`, static tags, optionally `pid`) with one gzipped pprof whose sample ID
//! names the window: a retry sends the same ID, so a deduplicating server stores it once.

use prost::Message;

use embers_formats::wire;

use crate::window::Window;

/// An encoded window, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The window's ID (also inside `body`).
    pub id: String,
    /// `PushRequest` protobuf bytes.
    pub body: Vec<u8>,
    /// Samples in it, for the status line.
    pub samples: u64,
}

/// What names a window uniquely: this agent run, the process, the window start.
pub fn window_id(instance: u64, window: &Window) -> String {
    format!("{instance:016x}-{}-{}", window.pid, window.start)
}

/// Encodes `window` for `app` with static `tags` (`pid` added when `tag_pid`).
pub fn encode(
    window: &Window,
    app: &str,
    tags: &[(String, String)],
    tag_pid: bool,
    instance: u64,
) -> Result<Outgoing, embers_formats::FormatError> {
    let mut raw = Vec::new();
    embers_formats::pprof::encode(&window.profile, &mut raw)?;
    let pair = |name: &str, value: &str| wire::LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    let mut labels = vec![pair("__name__", "process_cpu"), pair("service_name", app)];
    labels.extend(tags.iter().map(|(k, v)| pair(k, v)));
    if tag_pid {
        labels.push(pair("pid", &window.pid.to_string()));
    }
    let id = window_id(instance, window);
    let request = wire::PushRequest {
        series: vec![wire::RawProfileSeries {
            labels,
            samples: vec![wire::RawSample {
                raw_profile: raw,
                id: id.clone(),
            }],
            annotations: Vec::new(),
        }],
    };
    Ok(Outgoing {
        id,
        body: request.encode_to_vec(),
        samples: window.samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Windows;
    use embers_profile::Frame;
    use embers_sampler::Trace;
    use std::time::Duration;

    #[test]
    fn a_window_becomes_one_labelled_series_with_its_id() {
        let mut w = Windows::new(Duration::from_secs(10), 100, 1_700_000_000);
        w.add(&Trace {
            pid: 42,
            thread: "MainThread".into(),
            frames: vec![Frame::named("main"), Frame::named("foo")],
        });
        let window = w.cut(1_700_000_010).pop().unwrap();
        let tags = vec![("region".to_owned(), "us-east-1".to_owned())];
        let out = encode(&window, "ride-sharing-app", &tags, true, 7).unwrap();
        assert_eq!(out.id, "0000000000000007-42-1700000000");
        let request = wire::PushRequest::decode(out.body.as_slice()).unwrap();
        let series = &request.series[0];
        let labels: Vec<(&str, &str)> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "process_cpu"),
                ("service_name", "ride-sharing-app"),
                ("region", "us-east-1"),
                ("pid", "42")
            ]
        );
        assert_eq!(series.samples[0].id, out.id);
        let profile = embers_formats::pprof::decode(
            &series.samples[0].raw_profile,
            &embers_formats::ReadLimits::default(),
        )
        .unwrap();
        assert_eq!(profile.total(), 10_000_000);
        assert_eq!(profile.meta.time_nanos, 1_700_000_000_000_000_000);
    }
}
