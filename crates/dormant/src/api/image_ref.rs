//! Is a create request's `image` a reference Docker accepts? Docker refuses a malformed one with
//! a 400 of its own, which would otherwise reach the client as a Docker failure (502).
//!
//! The grammar is Docker's (distribution's `reference` package): `[domain/]path[:tag][@digest]`,
//! or an image id (64 hex digits, optionally `sha256:`-prefixed).

/// Longest name (domain and path) Docker accepts.
const MAX_NAME: usize = 255;
/// Longest tag Docker accepts.
const MAX_TAG: usize = 128;

/// `Ok` when Docker would parse `image` as a reference; else why not.
pub fn check(image: &str) -> Result<(), String> {
    if is_image_id(image.strip_prefix("sha256:").unwrap_or(image)) {
        return Ok(());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A `:` after the last `/` starts the tag; one before it belongs to a registry's port.
    let (name, tag) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains('/') => (&rest[..at], Some(&rest[at + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("the name must have 1 to {MAX_NAME} characters"));
    }
    let components: Vec<&str> = name.split('/').collect();
    let path = match components.split_first() {
        Some((first, path)) if !path.is_empty() && is_domain_like(first) => {
            check_domain(first)?;
            path
        }
        _ => &components[..],
    };
    path.iter()
        .try_for_each(|component| check_path_component(component))
}

fn is_image_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Docker reads the first component as a registry when it has a `.` or `:`, is `localhost`, or
/// has an upper-case letter (which a path never has).
fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_domain(domain: &str) -> Result<(), String> {
    let bad =
        || format!("the registry `{domain}` is not a host name or address with an optional port");
    let (host, port) = match domain.strip_prefix('[') {
        Some(v6) => {
            let (address, rest) = v6.split_once(']').ok_or_else(bad)?;
            let address_ok =
                !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
            if !address_ok {
                return Err(bad());
            }
            let port = match rest {
                "" => None,
                rest => Some(rest.strip_prefix(':').ok_or_else(bad)?),
            };
            (None, port)
        }
        None => match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        },
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_some_and(|host| !host.split('.').all(label_ok)) {
        return Err(bad());
    }
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    Ok(())
}

/// Lower-case letters and digits, in runs joined by `.`, `_`, `__` or any number of `-`.
fn check_path_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut at = 0;
    loop {
        let run = bytes[at..].iter().take_while(|b| alnum(**b)).count();
        if run == 0 {
            return Err(format!(
                "`{component}` must be lower-case letters and digits, joined by `.`, `_`, `__` or `-`"
            ));
        }
        at += run;
        if at == bytes.len() {
            return Ok(());
        }
        let separator = bytes[at..].iter().take_while(|b| !alnum(**b)).count();
        let ok = match &bytes[at..at + separator] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|b| *b == b'-'),
        };
        if !ok {
            return Err(format!(
                "`{component}` must be lower-case letters and digits, joined by `.`, `_`, `__` or `-`"
            ));
        }
        at += separator;
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let valid = tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the tag `{tag}` must be 1 to {MAX_TAG} letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let valid = digest.split_once(':').is_some_and(|(algorithm, hex)| {
        algorithm
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-_".contains(&b))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the digest `{digest}` must be `algorithm:hex`, e.g. `sha256:` and 64 hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts_pass() {
        let hex = "a".repeat(64);
        for image in [
            "dormant-demo:latest",
            "alpine",
            "library/alpine:3.19",
            "localhost:5000/team/app:v1",
            "localhost/app",
            "Registry.Example.com/app",
            "[::1]:5000/app",
            "a__b.c_d---e",
            "app:V1.0-rc_2",
            &format!("registry.example.com/app@sha256:{hex}"),
            &format!("app:1@sha256:{hex}"),
            &format!("sha256:{hex}"),
            &hex,
        ] {
            assert_eq!(check(image), Ok(()), "{image}");
        }
    }

    #[test]
    fn references_docker_refuses_fail() {
        for image in [
            "",
            "T\u{ad}l",
            "Alpine",
            "app:",
            ":tag",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a b",
            "app:.tag",
            "app@sha256:zz",
            "app@sha256",
            "bad_host.com/app",
            "[::1]x/app",
            "host:port/app",
            "[zz]/app",
            &format!("app:{}", "t".repeat(129)),
            &"a".repeat(256),
        ] {
            assert!(check(image).is_err(), "{image:?} passed");
        }
    }
}
