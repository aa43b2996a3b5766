//! Hand-rolled command-line flags of the demo workload (no clap: keep the binary tiny).

use std::time::Duration;

pub const USAGE: &str = "\
dormant-demo: a tiny HTTP workload for testing dormant

USAGE: dormant-demo [--port N] [--startup-delay DURATION] [--exit-immediately]
                    [--exit-if-exists PATH] [--help]

  --port N                  port to listen on (default: env PORT, else 8080)
  --startup-delay DURATION  sleep before binding the listener, e.g. 2s, 500ms, 1m
  --exit-immediately        exit with code 3 at once (simulates a crashing app)
  --exit-if-exists PATH     exit with code 3 at once if PATH exists (a crash that
                            starts after a file is written, e.g. before a sleep)
  --help                    print this help

ROUTES: GET / | GET /headers | ANY /echo | GET /ws | GET /stream?seconds=N |
        GET /download?bytes=N | GET|PUT|DELETE|POST /files/<absolute path> |
        GET /connect?addr=IP:PORT (one TCP connect, 1 s at most)
";

/// The parsed flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub port: u16,
    pub startup_delay: Duration,
    pub exit_immediately: bool,
    pub exit_if_exists: Option<std::path::PathBuf>,
    pub help: bool,
}

/// Parses the flags (without the program name); `env_port` is the value of `PORT`, if set.
pub(crate) fn parse(
    args: impl IntoIterator<Item = String>,
    env_port: Option<String>,
) -> Result<Args, String> {
    let mut port = match env_port.filter(|p| !p.trim().is_empty()) {
        Some(p) => parse_port(&p).map_err(|e| format!("env PORT: {e}"))?,
        None => 8080,
    };
    let mut startup_delay = Duration::ZERO;
    let mut exit_immediately = false;
    let mut exit_if_exists = None;
    let mut help = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => port = parse_port(&value("--port")?)?,
            "--startup-delay" => startup_delay = parse_duration(&value("--startup-delay")?)?,
            "--exit-immediately" => exit_immediately = true,
            "--exit-if-exists" => exit_if_exists = Some(value("--exit-if-exists")?.into()),
            "--help" | "-h" => help = true,
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        port,
        startup_delay,
        exit_immediately,
        exit_if_exists,
        help,
    })
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.trim().parse().map_err(|_| format!("invalid port {s:?}"))
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str], env: Option<&str>) -> Result<Args, String> {
        parse(args.iter().map(|s| s.to_string()), env.map(String::from))
    }

    #[test]
    fn defaults_and_env() {
        assert_eq!(p(&[], None).unwrap().port, 8080);
        assert_eq!(p(&[], Some("9000")).unwrap().port, 9000);
        assert_eq!(p(&["--port", "81"], Some("9000")).unwrap().port, 81);
        assert_eq!(p(&["--port=82"], None).unwrap().port, 82);
        assert!(p(&["--port"], None).is_err());
        assert!(p(&["--bogus"], None).is_err());
    }

    #[test]
    fn flags() {
        let a = p(&["--startup-delay", "500ms", "--exit-immediately"], None).unwrap();
        assert_eq!(a.startup_delay, Duration::from_millis(500));
        assert!(a.exit_immediately);
        assert!(p(&["--help"], None).unwrap().help);
        let a = p(&["--exit-if-exists", "/crash"], None).unwrap();
        assert_eq!(a.exit_if_exists, Some("/crash".into()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
