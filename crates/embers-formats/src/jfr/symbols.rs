//! Names the JVM generates anew in every run (lambda classes, reflection accessors,
//! native libraries unpacked to temporary names) are merged into one name, as Grafana's
//! jfr-parser does (`parser/symbols.go`), so a lambda's stacks from two runs or two
//! uploads land on one node instead of a new one per run.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        [
            // jdk/internal/reflect/GeneratedMethodAccessor31
            (
                r"^(jdk/internal/reflect/GeneratedMethodAccessor)(\d+)$",
                "${1}_",
            ),
            // org/example/OrderService$$Lambda$669/0x0000000800fd7318, Fib$$Lambda.0x00007ffa600c4da0
            (r"^(.+\$\$Lambda)(\$?\d*[./](0x)?[\da-f]+|\d+)$", "${1}_"),
            // The JDK's own hidden lambda classes, which Grafana's rule above misses:
            // jdk.jfr.internal.PlatformRecorder$$Lambda$72+0x00007f2230042338/720167805
            // (JDK 17), datadog.remoteconfig.PollerScheduler$$Lambda+0x00007ffa1c2dc000/795275472
            // (JDK 21)
            (r"^(.+\$\$Lambda)(\$\d+)?\+0x[\da-f]+/\d+$", "${1}_"),
            // libzstd-jni-1.5.1-16931311898282279136.so
            (
                r"^(\.?/tmp/)?(libzstd-jni-\d+\.\d+\.\d+-)(\d+)(\.so)( \(deleted\))?$",
                "libzstd-jni-_.so",
            ),
            // ./tmp/libamazonCorrettoCryptoProvider109b39cf33c563eb.so
            (
                r"^(\.?/tmp/)?(lib)?(amazonCorrettoCryptoProvider)(NativeLibraries\.)?([0-9a-f]{16})(/libcrypto|/libamazonCorrettoCryptoProvider)?(\.so)( \(deleted\))?$",
                "libamazonCorrettoCryptoProvider_.so",
            ),
            // libasyncProfiler-linux-arm64-17b9a1d8156277a98ccc871afa9a8f69215f92.so
            (
                r"^(\.?/tmp/)?(libasyncProfiler)-(linux-arm64|linux-musl-x64|linux-x64|macos)-(17b9a1d8156277a98ccc871afa9a8f69215f92)(\.so)( \(deleted\))?$",
                "libasyncProfiler-_.so",
            ),
        ]
        .into_iter()
        .map(|(p, replacement)| Rule {
            pattern: Regex::new(p).expect("the patterns are valid"),
            replacement,
        })
        .collect()
    })
}

/// `symbol` with generated parts merged (most symbols come back borrowed, unchanged).
pub(super) fn normalise(symbol: &str) -> Cow<'_, str> {
    // Every pattern needs one of these; most symbols have none and skip the regexes.
    if !(symbol.contains("$$Lambda")
        || symbol.contains("GeneratedMethodAccessor")
        || symbol.contains(".so"))
    {
        return Cow::Borrowed(symbol);
    }
    let mut out = Cow::Borrowed(symbol);
    for rule in rules() {
        if let Cow::Owned(s) = rule.pattern.replace_all(&out, rule.replacement) {
            out = Cow::Owned(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn generated_names_merge_as_grafana_merges_them() {
        for (raw, merged) in [
            (
                "org/example/rideshare/OrderService$$Lambda$669/0x0000000800fd7318",
                "org/example/rideshare/OrderService$$Lambda_",
            ),
            ("Fib$$Lambda.0x00007ffa600c4da0", "Fib$$Lambda_"),
            ("Work$$Lambda$14/0x0000000800c03000", "Work$$Lambda_"),
            (
                "jdk.jfr.internal.PlatformRecorder$$Lambda$72+0x00007f2230042338/720167805",
                "jdk.jfr.internal.PlatformRecorder$$Lambda_",
            ),
            (
                "datadog.remoteconfig.PollerScheduler$$Lambda+0x00007ffa1c2dc000/795275472",
                "datadog.remoteconfig.PollerScheduler$$Lambda_",
            ),
            (
                "jdk/internal/reflect/GeneratedMethodAccessor31",
                "jdk/internal/reflect/GeneratedMethodAccessor_",
            ),
            (
                "libzstd-jni-1.5.1-16931311898282279136.so",
                "libzstd-jni-_.so",
            ),
            (
                "./tmp/libamazonCorrettoCryptoProvider109b39cf33c563eb.so",
                "libamazonCorrettoCryptoProvider_.so",
            ),
            (
                "libasyncProfiler-linux-x64-17b9a1d8156277a98ccc871afa9a8f69215f92.so",
                "libasyncProfiler-_.so",
            ),
            ("java/lang/Thread", "java/lang/Thread"),
            ("libc.so.6", "libc.so.6"),
        ] {
            assert_eq!(normalise(raw), merged, "{raw}");
        }
    }
}
