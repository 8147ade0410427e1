//! The web UI with tokens on, in headless Chromium (`e2e/auth.mjs`): against a real
//! `embers server --auth-file` holding two tenants' profiles, the page asks for a token,
//! refuses a wrong one, shows the right tenant's flame graph and name, uploads a file
//! (a same-origin POST through the Origin check), asks again once the token is revoked
//! in the auth file, and forgets the token on sign out. Screenshots land in
//! `test-artifacts/ui-auth/`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::{agent, enc, now, repo, ServerHandle};

const TOKEN_A: &str = "embers-ui-test-token-a-4f1c9b2e7d0a5386";
const TOKEN_B: &str = "embers-ui-test-token-b-93d2e6a1c8b74f05";
const TOKEN_C: &str = "embers-ui-test-token-c-0b7e5d3f9a2c1864";

fn auth_file(tokens: &[(&str, &str)]) -> String {
    tokens
        .iter()
        .map(|(token, tenant)| {
            format!(
                "[[tokens]]\ntoken = \"{token}\"\ntenant = \"{tenant}\"\nscopes = [\"ingest\", \"read\"]\n\n"
            )
        })
        .collect()
}

/// Pushes folded stacks for `app` with a tenant's token.
fn ingest(server: &ServerHandle, token: &str, app: &str, folded: &str) {
    let at = now() - 120;
    let url = server.url(&format!(
        "/ingest?name={}&from={at}&until={}&format=folded",
        enc(&format!("{app}.cpu")),
        at + 10
    ));
    let mut r = agent()
        .post(&url)
        .header("content-type", "text/plain")
        .header("authorization", &format!("Bearer {token}"))
        .send(folded.as_bytes())
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
}

#[test]
fn ui_asks_for_a_token_shows_the_tenant_and_signs_out_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        auth_file(&[
            (TOKEN_A, "team-a"),
            (TOKEN_B, "team-b"),
            (TOKEN_C, "team-b"),
        ]),
    )
    .unwrap();
    let server = ServerHandle::start(
        &dir.path().join("data"),
        &["--auth-file", auth.to_str().unwrap()],
    );
    // Both tenants have a service; each token must show only its own.
    ingest(
        &server,
        TOKEN_A,
        "shop",
        "main;checkout 30\nmain;browse 10\n",
    );
    ingest(&server, TOKEN_B, "billing", "main;invoice 5\n");
    let folded = dir.path().join("upload.txt");
    std::fs::write(&folded, "main;parse 3\nmain;render 1\n").unwrap();
    let setup = json!({
        "authFile": auth,
        "tokens": {"a": TOKEN_A, "b": TOKEN_B, "c": TOKEN_C},
        "revokeA": auth_file(&[(TOKEN_B, "team-b"), (TOKEN_C, "team-b")]),
        "revokeB": auth_file(&[(TOKEN_C, "team-b")]),
        "folded": folded,
    });

    let out = Command::new("node")
        .arg(repo().join("e2e/auth.mjs"))
        .arg(server.url(""))
        .arg(setup.to_string())
        .arg(repo().join("test-artifacts/ui-auth"))
        .output()
        .expect("node runs (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "e2e/auth.mjs failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        server.log.lock().unwrap()
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r["errors"], json!([]), "errors in the page");
    // Never the browser's own login prompt (a Basic challenge on a fetch would open it).
    assert_eq!(r["dialogs"], json!([]), "a native dialog opened");

    // The prompt: open, labelled, focused, nothing kept, no tenant shown.
    let first = &r["first"];
    assert_eq!(first["open"], true, "{first}");
    assert_eq!(first["focused"], "token-input", "{first}");
    assert_eq!(first["label"], "Access token", "{first}");
    assert_eq!(first["stored"], Value::Null);
    assert_eq!(first["session"], "");
    // A wrong token: refused, still asking, not kept.
    let wrong = &r["wrong"];
    assert_eq!(wrong["open"], true, "{wrong}");
    assert!(
        wrong["error"].as_str().unwrap().contains("refused"),
        "{wrong}"
    );
    assert_eq!(wrong["focused"], "token-input", "{wrong}");
    assert_eq!(wrong["stored"], Value::Null);
    // The right one: team-a's graph (40 samples at 100 Hz) and name, kept for the tab.
    let a = &r["signedIn"];
    assert_eq!(a["dialog"], false, "{a}");
    assert_eq!(a["tenant"], "team-a", "{a}");
    assert_eq!(a["signOut"], true, "{a}");
    assert_eq!(a["apps"], json!(["shop"]), "{a}");
    assert_eq!(a["stored"], TOKEN_A);
    assert_eq!(a["numTicks"], 40 * 10_000_000u64, "{a}");
    assert!(a["painted"].as_u64().unwrap() > 1000, "{a}");
    // The upload, a same-origin POST with the token.
    assert_eq!(r["upload"]["numTicks"], 4, "{}", r["upload"]);
    // Every API call after sign-in carried the token as a Bearer credential.
    let requests = r["requests"].as_array().unwrap();
    let upload = requests
        .iter()
        .find(|q| {
            q["path"]
                .as_str()
                .unwrap()
                .ends_with("AdHocProfileService/Upload")
        })
        .unwrap_or_else(|| panic!("no upload request: {requests:?}"));
    assert_eq!(upload["method"], "POST");
    assert_eq!(
        upload["authorization"],
        format!("Bearer {TOKEN_A}"),
        "{upload}"
    );
    assert!(
        requests
            .iter()
            .any(|q| q["path"] == "/render" && q["authorization"] == format!("Bearer {TOKEN_A}")),
        "{requests:?}"
    );
    // Revoked in the auth file: asked again, with the reason, and the stale token forgotten.
    let revoked = &r["revoked"];
    assert_eq!(revoked["open"], true, "{revoked}");
    assert!(
        revoked["error"]
            .as_str()
            .unwrap()
            .contains("no longer accepted"),
        "{revoked}"
    );
    assert_eq!(revoked["stored"], Value::Null);
    // Team b sees only its own service.
    let b = &r["tenantB"];
    assert_eq!(b["tenant"], "team-b", "{b}");
    assert_eq!(b["apps"], json!(["billing"]), "{b}");
    assert_eq!(b["stored"], TOKEN_B);
    // Team b's token revoked with its page open: the next call asks again.
    let in_page = &r["revokedInPage"];
    assert_eq!(in_page["open"], true, "{in_page}");
    assert!(
        in_page["error"]
            .as_str()
            .unwrap()
            .contains("no longer accepts"),
        "{in_page}"
    );
    assert_eq!(in_page["stored"], Value::Null, "{in_page}");
    assert_eq!(in_page["session"], "", "{in_page}");
    // Another team-b token carries on with the call it interrupted (5 samples, by line).
    let c = &r["tenantC"];
    assert_eq!(c["tenant"], "team-b", "{c}");
    assert_eq!(c["by"], "line", "{c}");
    assert_eq!(c["numTicks"], 5 * 10_000_000u64, "{c}");
    assert_eq!(c["stored"], TOKEN_C);
    // Sign out: forgotten, asked again, no tenant shown.
    let out = &r["signedOut"];
    assert_eq!(out["open"], true, "{out}");
    assert_eq!(out["stored"], Value::Null, "{out}");
    assert_eq!(out["session"], "", "{out}");
    assert_eq!(out["focused"], "token-input", "{out}");
}
