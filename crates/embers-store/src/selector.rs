//! Series selectors, in the two forms clients send:
//! `app.cpu{region="us-west-1", vehicle=~"car|bike"}` (Pyroscope's app name with a
//! profile-type suffix) and `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}`
//! (Grafana's profile type id). Matchers work as in Prometheus: `=`, `!=`, `=~`, `!~`,
//! regular expressions anchored at both ends, an absent label reads as `""`.

use std::fmt;
use std::str::FromStr;

/// Longest selector accepted.
const MAX_INPUT: usize = 64 << 10;
/// Most matchers in one selector.
const MAX_MATCHERS: usize = 64;

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `=~`, a regular expression matching the whole value.
    Re,
    /// `!~`
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        }
    }
}

/// One `name op "value"` condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regular expression.
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

/// A selector that did not parse, with the byte position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
#[non_exhaustive]
pub struct SelectorError {
    /// Byte offset into the input.
    pub position: usize,
    /// What was expected or wrong.
    pub message: String,
}

fn error(position: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        position,
        message: message.into(),
    }
}

impl Matcher {
    /// A matcher; regular expressions are compiled (anchored) here.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Matcher, SelectorError> {
        let (name, value) = (name.into(), value.into());
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| error(0, format!("invalid regular expression {value:?}: {e}")))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// Whether a label value (`None`: the label is absent, read as `""`) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::NotEq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only `"` and `\` need escaping for our parser; everything else is kept as is.
        write!(f, "{}{}\"", self.name, self.op.as_str())?;
        for c in self.value.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// A name (app with suffix, or profile type id) and matchers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    /// Text before `{`: `app.cpu` or `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
    pub name: Option<String>,
    /// The conditions inside braces.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses a selector.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        if input.len() > MAX_INPUT {
            return Err(error(
                MAX_INPUT,
                format!("selector longer than {MAX_INPUT} bytes"),
            ));
        }
        let mut p = Parser { s: input, pos: 0 };
        p.skip_ws();
        let name_start = p.pos;
        while p
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_.:-/".contains(c))
        {
            p.bump();
        }
        let name = (p.pos > name_start).then(|| input[name_start..p.pos].to_owned());
        p.skip_ws();
        let mut matchers = Vec::new();
        if p.eat('{') {
            loop {
                p.skip_ws();
                if p.eat('}') {
                    break;
                }
                if matchers.len() == MAX_MATCHERS {
                    return Err(error(p.pos, format!("more than {MAX_MATCHERS} matchers")));
                }
                matchers.push(p.matcher()?);
                p.skip_ws();
                if p.eat(',') {
                    continue;
                }
                if p.eat('}') {
                    break;
                }
                return Err(match p.peek() {
                    None => error(p.pos, "expected `,` or `}`, the selector ended"),
                    Some(c) => error(p.pos, format!("expected `,` or `}}`, found {c:?}")),
                });
            }
            p.skip_ws();
        }
        if let Some(c) = p.peek() {
            return Err(error(
                p.pos,
                format!("unexpected {c:?}; a selector is name{{label=\"value\", …}}"),
            ));
        }
        if name.is_none() && matchers.is_empty() && !input.contains('{') {
            return Err(error(0, "empty selector"));
        }
        Ok(Selector { name, matchers })
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += c.len_utf8();
        }
        hit
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn matcher(&mut self) -> Result<Matcher, SelectorError> {
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(error(
                start,
                "expected a label name (letters, digits, `_`, `.`)",
            ));
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.bump();
        }
        let name = self.s[start..self.pos].to_owned();
        self.skip_ws();
        let op_at = self.pos;
        let op = if self.eat('=') {
            if self.eat('~') {
                MatchOp::Re
            } else {
                MatchOp::Eq
            }
        } else if self.eat('!') {
            if self.eat('=') {
                MatchOp::NotEq
            } else if self.eat('~') {
                MatchOp::NotRe
            } else {
                return Err(error(
                    op_at,
                    format!("expected one of =, !=, =~, !~ after label name {name:?}"),
                ));
            }
        } else {
            return Err(error(
                op_at,
                format!("expected one of =, !=, =~, !~ after label name {name:?}"),
            ));
        };
        self.skip_ws();
        let value_at = self.pos;
        let value = self.string()?;
        Matcher::new(name, op, value).map_err(|e| error(value_at, e.message))
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        let quote = match self.bump() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(error(start, "expected a quoted value")),
        };
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(error(start, "unterminated string")),
                Some(c) if c == quote => return Ok(out),
                Some('\\') if quote != '`' => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                    // Regexes keep their own escapes (`\d`, `\.`).
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err(error(start, "unterminated string")),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn both_forms_and_every_operator() {
        let s =
            parse(r#"app.cpu{region="us-west-1", vehicle=~"car|bike", env!="dev", host!~'db.*',}"#);
        assert_eq!(s.name.as_deref(), Some("app.cpu"));
        let ops: Vec<_> = s
            .matchers
            .iter()
            .map(|m| (m.name.as_str(), m.op, m.value.as_str()))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("region", MatchOp::Eq, "us-west-1"),
                ("vehicle", MatchOp::Re, "car|bike"),
                ("env", MatchOp::NotEq, "dev"),
                ("host", MatchOp::NotRe, "db.*"),
            ]
        );
        let g = parse(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}"#);
        assert_eq!(
            g.name.as_deref(),
            Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
        );
        assert_eq!(parse(r#"{service_name="x"}"#).name, None);
        assert!(parse("ride-sharing-app.cpu").matchers.is_empty());
        assert!(parse("app.cpu{}").matchers.is_empty());
        assert!(parse("{}").matchers.is_empty());
        assert_eq!(
            parse(r#"{otel.scope.name="a\"b\\c"}"#).matchers[0].value,
            "a\"b\\c"
        );
        assert_eq!(parse(r#"{x=~`\d+`}"#).matchers[0].value, r"\d+");
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            (r#"app{region="x""#, 14),
            (r#"app{region="x"#, 11),
            (r#"app{region>"x"}"#, 10),
            (r#"app{region=>"x"}"#, 11),
            (r#"app{9x="y"}"#, 4),
            (r#"app{x=~"("}"#, 7),
            (r#"app{x="y"} extra"#, 11),
        ];
        for (input, position) in cases {
            let e = Selector::parse(input).unwrap_err();
            assert_eq!(e.position, position, "{input}: {e}");
        }
        let e = Selector::parse(r#"app{region>"x"}"#).unwrap_err();
        assert!(
            e.to_string().contains("expected one of =, !=, =~, !~"),
            "{e}"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            r#"app.cpu{region="us",vehicle=~"car|bike"}"#,
            r#"{a!="x\"y",b!~"z"}"#,
            "app",
        ] {
            let parsed = parse(s);
            assert_eq!(parse(&parsed.to_string()), parsed);
        }
    }

    #[test]
    fn absent_labels_read_as_empty() {
        let m = |op, v| Matcher::new("x", op, v).unwrap();
        assert!(m(MatchOp::NotEq, "a").matches(None));
        assert!(m(MatchOp::Eq, "").matches(None));
        assert!(!m(MatchOp::Eq, "a").matches(None));
        assert!(m(MatchOp::Re, "a|").matches(None));
        assert!(!m(MatchOp::Re, "car").matches(Some("cars")), "anchored");
        assert!(m(MatchOp::NotRe, "car").matches(Some("cars")));
    }
}
