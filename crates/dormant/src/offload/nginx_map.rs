//! The nginx map file: its text, made from the running public containers,
//! and its atomic replacement on disk.
//!
//! nginx's recipe includes the file in its `http { }` block. It holds an
//! `upstream` block per running public container (so nginx keeps
//! connections to it alive), one for dormant's wake endpoint, and
//! `map $host $dormant_upstream`: each such container's hostname to its
//! upstream, every other hostname to the wake endpoint. Only hostnames of
//! plain DNS characters and socket addresses ever reach it: nothing a
//! container's name holds can become nginx syntax.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// Most idle connections each nginx worker keeps to each container (they
/// exist only as many as were busy at once, and close after nginx's
/// `keepalive_timeout`). Fewer than a busy container's concurrent requests
/// makes nginx close and open a connection per request, and the
/// connections it closed wait out TIME_WAIT: 8 per worker measured 30 times
/// slower than nginx alone at 64 concurrent clients, once the host's
/// ephemeral ports ran out (bench/offload.sh).
const KEEPALIVE: u32 = 128;

/// The upstream block that stands for dormant's wake endpoint.
pub const WAKE_UPSTREAM: &str = "dormant-wake";

/// What `$dormant_upstream` is for a host nginx sends to dormant.
pub fn wake_value() -> String {
    format!("{WAKE_UPSTREAM}{}", super::WAKE_PREFIX)
}

/// The name of the upstream block for container `name` at `upstream`: the
/// address is part of it, so the probe's answer tells which address nginx
/// sends the host to.
pub fn upstream_name(name: &str, upstream: SocketAddr) -> String {
    let address: String = upstream
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("dormant-c-{name}-{address}")
}

/// The file's text for `running` (name, upstream) under `base_domain`,
/// with the wake endpoint at `wake` (dormant's proxy as nginx reaches it).
/// `generation` counts the versions this dormant wrote (for people reading
/// the file and the log). Entries whose hostname is not plain DNS are left
/// out (and returned, to be logged): they go through dormant instead.
pub fn render(
    base_domain: &str,
    wake: SocketAddr,
    running: &[(String, SocketAddr)],
    generation: u64,
) -> (String, Vec<String>) {
    let mut upstreams = format!(
        "# Written by dormant (--gateway nginx), generation {generation}: do not edit.\n\
         upstream {WAKE_UPSTREAM} {{\n    server {wake};\n    keepalive {KEEPALIVE};\n}}\n"
    );
    let mut map = format!(
        "# Each running public container's hostname, then its upstream; every\n\
         # other hostname goes to dormant's wake endpoint.\n\
         map $host $dormant_upstream {{\n    default {};\n",
        wake_value()
    );
    let mut refused = Vec::new();
    let base_domain = base_domain.trim_matches('.').to_ascii_lowercase();
    for (name, upstream) in running {
        let name = name.to_ascii_lowercase();
        let host = format!("{name}.{base_domain}");
        if !is_plain_hostname(&host) {
            refused.push(host);
            continue;
        }
        let block = upstream_name(&name, *upstream);
        upstreams.push_str(&format!(
            "upstream {block} {{\n    server {upstream};\n    keepalive {KEEPALIVE};\n}}\n"
        ));
        map.push_str(&format!("    {host} {block};\n"));
    }
    map.push_str("}\n");
    (upstreams + &map, refused)
}

/// Letters, digits, `-` and `.`, with at least one dot, not starting with
/// a dot, `-` or `~`, at most 253 bytes: an nginx map key that is a plain
/// string (never a regex, wildcard, keyword or the start of another
/// directive).
pub fn is_plain_hostname(host: &str) -> bool {
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    plain
        && host.len() <= 253
        && host.contains('.')
        && host.as_bytes()[0].is_ascii_alphanumeric()
        && !host.ends_with('.')
        && !host.contains("..")
}

/// Replaces `path` with `text` so nginx never reads half a file: a temporary
/// file beside it, written and fsynced, renamed over it, and the directory
/// fsynced so the rename survives a crash.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the map path names no file",
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    const WAKE: &str = "127.0.0.1:8080";

    fn entries(text: &str) -> Vec<&str> {
        let start = text.find("map $host").unwrap();
        text[start..]
            .lines()
            .skip(2)
            .filter(|l| *l != "}")
            .collect()
    }

    #[test]
    fn each_host_gets_an_upstream_block_named_after_its_address() {
        let running = vec![
            ("alice".to_owned(), at("172.18.0.5:8080")),
            ("bob-2".to_owned(), at("[::1]:3000")),
        ];
        let (text, refused) = render(".Apps.Example.com.", at(WAKE), &running, 7);
        assert!(refused.is_empty());
        assert!(text.starts_with("# Written by dormant (--gateway nginx), generation 7"));
        assert!(text.contains(
            "upstream dormant-wake {\n    server 127.0.0.1:8080;\n    keepalive 128;\n}\n"
        ));
        assert!(text
            .contains("upstream dormant-c-alice-172-18-0-5-8080 {\n    server 172.18.0.5:8080;\n"));
        assert!(text.contains("upstream dormant-c-bob-2----1--3000 {\n    server [::1]:3000;\n"));
        assert!(text.contains("    default dormant-wake/.dormant/wake;\n"));
        assert_eq!(
            entries(&text),
            [
                "    alice.apps.example.com dormant-c-alice-172-18-0-5-8080;",
                "    bob-2.apps.example.com dormant-c-bob-2----1--3000;"
            ]
        );
    }

    #[test]
    fn a_name_that_could_be_nginx_syntax_never_reaches_the_file() {
        for name in [
            "a;\ninclude /etc/passwd",
            "a b",
            "a\"b",
            "~regex",
            "a}",
            "$host",
            "a'b",
            "a\\b",
            "a{",
            "a#",
        ] {
            let running = [(name.to_owned(), at("10.0.0.1:80"))];
            let (text, refused) = render("localhost", at(WAKE), &running, 1);
            assert_eq!(refused.len(), 1, "{name:?}");
            assert!(entries(&text).is_empty(), "{name:?}");
            assert_eq!(text.matches("\nupstream ").count(), 1, "{name:?}");
        }
        for host in [
            "default",
            "include",
            "hostnames",
            ".a.b",
            "a..b",
            "-a.b",
            "a.b.",
        ] {
            assert!(!is_plain_hostname(host), "{host}");
        }
        assert!(is_plain_hostname("a-1.localhost"));
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("dormant-map-{}", crate::token::random_hex(4)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("map.conf");
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
