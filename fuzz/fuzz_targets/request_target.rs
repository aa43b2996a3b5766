//! Fuzz target: how the proxy classifies a request's method, target and Host headers.
//! Never panics; what it forwards is always a path starting with `/` (never an address or a
//! port) to a single-label name, and CONNECT is never forwarded.
#![no_main]

use dormant::proxy::target::{classify, RouteTarget};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // Lines: method, target, then each Host header value.
    let mut lines = input.split(|b| *b == b'\n');
    let (Some(method), Some(target)) = (lines.next(), lines.next()) else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(target)) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for host in lines.take(3) {
        if let Ok(value) = HeaderValue::from_bytes(host) {
            headers.append(http::header::HOST, value);
        }
    }
    match classify(&method, &uri, headers.get_all(http::header::HOST), "localhost") {
        Ok(RouteTarget::Container { name, path }) => {
            assert!(method != Method::CONNECT, "CONNECT forwarded");
            assert!(path.as_str().starts_with('/'), "{path:?} from {uri:?}");
            assert!(!name.is_empty() && !name.contains('.'), "{name:?}");
        }
        Ok(RouteTarget::ServerOptions) => assert_eq!(method, Method::OPTIONS),
        Err(_) => {}
    }
});
