//! `/files/<path>`: read, write, delete and inspect any path of the container's own filesystem.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::json;
use crate::routes::{json_response, text};

type Params = Query<HashMap<String, String>>;

/// `/files/etc/foo` names `/etc/foo`.
fn fs_path(p: &str) -> PathBuf {
    PathBuf::from(format!("/{}", p.trim_start_matches('/')))
}

/// Maps an I/O error to a response: 404 missing, 409 exists, 400 not-a-dir, 403 denied, else 500.
fn io_error(path: &FsPath, e: std::io::Error) -> Response {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotADirectory | ErrorKind::IsADirectory | ErrorKind::DirectoryNotEmpty => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, format!("{}: {e}\n", path.display()))
}

fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// `GET`: the file's content (streamed), a directory's entry names (one per line), or
/// with `?op=stat` a JSON description of the path itself (symlinks not followed).
pub async fn get(Path(p): Path<String>, Query(q): Params) -> Response {
    let path = fs_path(&p);
    match q.get("op").map(String::as_str) {
        None => {}
        Some("stat") => return stat(&path).await,
        Some(op) => return text(StatusCode::BAD_REQUEST, format!("unknown GET op {op:?}\n")),
    }
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) => return io_error(&path, e),
    };
    if meta.is_dir() {
        return list_dir(&path).await;
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return io_error(&path, e),
    };
    let mut resp = Response::new(Body::from_stream(ReaderStream::new(file)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Files under /proc say they hold 0 bytes, yet have content.
    if meta.is_file() && meta.len() > 0 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    }
    resp
}

async fn list_dir(path: &FsPath) -> Response {
    let mut names = Vec::new();
    let mut rd = match tokio::fs::read_dir(path).await {
        Ok(rd) => rd,
        Err(e) => return io_error(path, e),
    };
    loop {
        match rd.next_entry().await {
            Ok(Some(entry)) => names.push(entry.file_name().to_string_lossy().into_owned()),
            Ok(None) => break,
            Err(e) => return io_error(path, e),
        }
    }
    names.sort();
    let body: String = names.iter().map(|n| format!("{n}\n")).collect();
    text(StatusCode::OK, body)
}

async fn stat(path: &FsPath) -> Response {
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(m) => m,
        Err(e) => return io_error(path, e),
    };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else {
        "other"
    };
    let link_target = match ft.is_symlink() {
        true => match tokio::fs::read_link(path).await {
            Ok(t) => json::string(&t.to_string_lossy()),
            Err(e) => return io_error(path, e),
        },
        false => "null".to_string(),
    };
    json_response(json::object([
        ("type", json::string(kind)),
        (
            "mode",
            json::string(&format!("{:04o}", meta.permissions().mode() & 0o7777)),
        ),
        ("size", meta.len().to_string()),
        ("nlink", meta.nlink().to_string()),
        ("uid", meta.uid().to_string()),
        ("gid", meta.gid().to_string()),
        ("link_target", link_target),
    ]))
}

/// `PUT`: streams the body into the file (creating parent directories); 201 new, 204 replaced.
pub async fn put(Path(p): Path<String>, body: Body) -> Response {
    let path = fs_path(&p);
    let existed = tokio::fs::metadata(&path).await.is_ok();
    if let Err(e) = create_parent(&path).await {
        return io_error(&path, e);
    }
    let mut file = match tokio::fs::File::create(&path).await {
        Ok(f) => f,
        Err(e) => return io_error(&path, e),
    };
    let mut data = body.into_data_stream();
    while let Some(chunk) = data.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading request body: {e}\n"),
                )
            }
        };
        if let Err(e) = file.write_all(&chunk).await {
            return io_error(&path, e);
        }
    }
    if let Err(e) = file.flush().await {
        return io_error(&path, e);
    }
    empty(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn create_parent(path: &FsPath) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) => tokio::fs::create_dir_all(parent).await,
        None => Ok(()),
    }
}

/// `DELETE`: removes a file, a symlink (not its target) or a directory recursively; 204.
pub async fn delete(Path(p): Path<String>) -> Response {
    let path = fs_path(&p);
    let result = match tokio::fs::symlink_metadata(&path).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&path).await,
        Ok(_) => tokio::fs::remove_file(&path).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => io_error(&path, e),
    }
}

/// `POST ?op=mkdir | symlink&target=T | link&target=T | chmod&mode=OCTAL`.
/// mkdir/symlink/link answer 201 (creating parent directories), chmod 204.
pub async fn post(Path(p): Path<String>, Query(q): Params) -> Response {
    let path = fs_path(&p);
    let target = q.get("target");
    let result = match (q.get("op").map(String::as_str), target) {
        (Some("mkdir"), _) => tokio::fs::create_dir_all(&path).await,
        (Some("symlink"), Some(t)) => match create_parent(&path).await {
            Ok(()) => tokio::fs::symlink(t, &path).await,
            Err(e) => Err(e),
        },
        (Some("link"), Some(t)) => match create_parent(&path).await {
            Ok(()) => tokio::fs::hard_link(fs_path(t), &path).await,
            Err(e) => Err(e),
        },
        (Some("chmod"), _) => {
            let Some(mode) = q.get("mode").and_then(|m| u32::from_str_radix(m, 8).ok()) else {
                return text(StatusCode::BAD_REQUEST, "chmod needs mode=<octal>\n");
            };
            return match tokio::fs::set_permissions(&path, PermissionsExt::from_mode(mode)).await {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => io_error(&path, e),
            };
        }
        (Some("symlink" | "link"), None) => {
            return text(
                StatusCode::BAD_REQUEST,
                "symlink and link need target=<path>\n",
            );
        }
        (Some(op), _) => return text(StatusCode::BAD_REQUEST, format!("unknown POST op {op:?}\n")),
        (None, _) => {
            return text(
                StatusCode::BAD_REQUEST,
                "POST needs op=mkdir|symlink|link|chmod\n",
            );
        }
    };
    match result {
        Ok(()) => empty(StatusCode::CREATED),
        Err(e) => io_error(&path, e),
    }
}
