//! Sparse files: which parts of a file hold data (`SEEK_DATA`/`SEEK_HOLE`), and the map that
//! carries them in the snapshot, written and read here.
//!
//! A file with holes is stored as GNU tar stores it with `--format=posix --sparse` (PAX sparse
//! format 1.0): PAX records `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name=<path>`
//! and `GNU.sparse.realsize=<apparent size>`; a stand-in ustar name `<dir>/GNUSparseFile.0/<name>`;
//! and as content the map — decimal lines: the number of segments, then each segment's offset
//! and length, NUL-padded to a 512-byte block — followed by the segments' bytes. A file that
//! ends in a hole ends its map with a segment of length 0 at its size, as GNU tar writes it.

use std::fs::File;
use std::io::{self, Read};

use rustix::fs::{seek, SeekFrom};
use rustix::io::Errno;

/// Most segments one map holds. A file with more data islands is captured with its smallest
/// holes read as zeros, so a map (and a reader's memory) never grows past this.
pub(super) const MAX_SEGMENTS: usize = 1 << 16;
const BLOCK: u64 = 512;
/// Digits of the longest number a map can hold (`u64::MAX`).
const MAX_DIGITS: usize = 20;

/// `len` bytes of data at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Segment {
    pub offset: u64,
    pub len: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The data segments of `file`, whose size is `size`, in order. A filesystem that does not
/// track holes shows the whole file as data.
pub(super) fn data_segments(file: &File, size: u64) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut min_gap = 0;
    let mut pos = 0;
    while pos < size {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(start) => start,
            // Nothing but a hole from `pos` to the end.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::NOTSUP) => return Ok(whole(size)),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = seek(file, SeekFrom::Hole(start))?.min(size);
        if end <= start {
            // A filesystem answering nonsense: read it all rather than loop.
            return Ok(whole(size));
        }
        push(
            &mut segments,
            Segment {
                offset: start,
                len: end - start,
            },
            &mut min_gap,
        );
        pos = end;
    }
    Ok(segments)
}

/// One segment covering `size` bytes (none for an empty file).
pub(super) fn whole(size: u64) -> Vec<Segment> {
    if size == 0 {
        Vec::new()
    } else {
        vec![Segment {
            offset: 0,
            len: size,
        }]
    }
}

/// Appends `next`, merging it into the last segment when the hole between them is at most
/// `min_gap`; past the limit, `min_gap` doubles and the list is merged again.
fn push(segments: &mut Vec<Segment>, next: Segment, min_gap: &mut u64) {
    if let Some(last) = segments.last_mut() {
        if next.offset - last.end() <= *min_gap {
            last.len = next.end() - last.offset;
            return;
        }
    }
    segments.push(next);
    // One slot stays free for the closing segment of a file that ends in a hole.
    while segments.len() >= MAX_SEGMENTS {
        *min_gap = (*min_gap).max(4096) * 2;
        let mut merged: Vec<Segment> = Vec::with_capacity(segments.len());
        for s in segments.drain(..) {
            match merged.last_mut() {
                Some(last) if s.offset - last.end() <= *min_gap => last.len = s.end() - last.offset,
                _ => merged.push(s),
            }
        }
        *segments = merged;
    }
}

/// The map of a file of `size` bytes with these data segments, padded to whole blocks.
pub(super) fn encode_map(data: &[Segment], size: u64) -> Vec<u8> {
    let ends_in_hole = data.last().is_none_or(|s| s.end() < size);
    let count = data.len() + usize::from(ends_in_hole);
    let mut map = format!("{count}\n");
    for s in data {
        map.push_str(&format!("{}\n{}\n", s.offset, s.len));
    }
    if ends_in_hole {
        map.push_str(&format!("{size}\n0\n"));
    }
    let mut map = map.into_bytes();
    map.resize(map.len().div_ceil(BLOCK as usize) * BLOCK as usize, 0);
    map
}

/// Reads the map at the start of a sparse entry's content and checks it against the file's
/// apparent size: at most [`MAX_SEGMENTS`], in order, none overlapping another or reaching past
/// the end. Returns the segments and the map's length in bytes.
pub(super) fn read_map(content: &mut impl Read, size: u64) -> Result<(Vec<Segment>, u64), String> {
    let mut reader = MapReader {
        content,
        block: [0; BLOCK as usize],
        pos: BLOCK as usize,
        blocks: 0,
    };
    let count = reader.number()?;
    if count > MAX_SEGMENTS as u64 {
        return Err(format!(
            "a sparse map of {count} segments (at most {MAX_SEGMENTS} are read)"
        ));
    }
    let mut segments = Vec::with_capacity(count as usize);
    let mut end = 0u64;
    for _ in 0..count {
        let (offset, len) = (reader.number()?, reader.number()?);
        let seg_end = offset
            .checked_add(len)
            .filter(|e| *e <= size)
            .ok_or_else(|| {
                format!("a sparse segment at {offset} of {len} bytes past the file's end ({size})")
            })?;
        if offset < end {
            return Err(format!(
                "sparse segments out of order or overlapping at offset {offset}"
            ));
        }
        end = seg_end;
        segments.push(Segment { offset, len });
    }
    Ok((segments, reader.blocks * BLOCK))
}

/// Reads a map's decimal lines block by block.
struct MapReader<'r, R> {
    content: &'r mut R,
    block: [u8; BLOCK as usize],
    pos: usize,
    /// Blocks read so far.
    blocks: u64,
}

impl<R: Read> MapReader<'_, R> {
    fn byte(&mut self) -> Result<u8, String> {
        if self.pos == self.block.len() {
            self.content
                .read_exact(&mut self.block)
                .map_err(|e| format!("a sparse map cut short: {e}"))?;
            self.pos = 0;
            self.blocks += 1;
        }
        self.pos += 1;
        Ok(self.block[self.pos - 1])
    }

    /// One number and its newline.
    fn number(&mut self) -> Result<u64, String> {
        let mut digits = 0;
        let mut value = 0u64;
        loop {
            match self.byte()? {
                b'\n' if digits > 0 => return Ok(value),
                b @ b'0'..=b'9' if digits < MAX_DIGITS => {
                    digits += 1;
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(b - b'0')))
                        .ok_or("a sparse map number that overflows")?;
                }
                _ => return Err("a sparse map that is not decimal lines".into()),
            }
        }
    }
}

/// The ustar name of a sparse entry, for tools that do not read sparse PAX records (where
/// they put the map and data instead of the file): GNU tar's `%d/GNUSparseFile.%p/%f`.
pub(super) fn stand_in_name(path: &[u8]) -> Vec<u8> {
    let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    [dir, b"GNUSparseFile.0/", name].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(offset: u64, len: u64) -> Segment {
        Segment { offset, len }
    }

    #[test]
    fn maps_round_trip_and_close_a_final_hole() {
        let data = [seg(0, 4096), seg(1 << 20, 10), seg(1 << 40, 1)];
        let size = (1 << 41) + 5;
        let map = encode_map(&data, size);
        assert_eq!(map.len() % 512, 0);
        assert!(map.starts_with(b"4\n0\n4096\n1048576\n10\n1099511627776\n1\n2199023255557\n0\n\0"));
        let mut content = [map.clone(), b"data".to_vec()].concat();
        let (segments, len) = read_map(&mut content.as_slice(), size).unwrap();
        assert_eq!(len, map.len() as u64);
        assert_eq!(segments, [&data[..], &[seg(size, 0)]].concat());
        // All hole: one closing segment.
        assert_eq!(&encode_map(&[], 7)[..7], b"1\n7\n0\n\0");
        // Data to the end: no closing segment.
        assert_eq!(&encode_map(&[seg(4, 3)], 7)[..7], b"1\n4\n3\n\0");
        content.truncate(0);
        assert!(read_map(&mut content.as_slice(), size).is_err());
    }

    #[test]
    fn hostile_maps_are_refused() {
        let map = |text: &str| {
            let mut m = text.as_bytes().to_vec();
            m.resize(m.len().div_ceil(512).max(1) * 512, 0);
            m
        };
        for (text, why) in [
            ("2\n0\n10\n5\n10\n", "overlap"),
            ("2\n50\n10\n0\n10\n", "out of order"),
            ("1\n95\n10\n", "past the end"),
            ("1\n18446744073709551615\n2\n", "overflow of offset + len"),
            ("1\n99999999999999999999\n1\n", "number overflow"),
            ("1\n000000000000000000001\n1\n", "too many digits"),
            ("70000\n", "too many segments"),
            ("1\n-1\n1\n", "not decimal"),
            ("1\n\n1\n", "empty number"),
            ("3\n0\n1\n", "cut short"),
        ] {
            let m = map(text);
            assert!(read_map(&mut m.as_slice(), 100).is_err(), "{why}");
        }
        // A map longer than one block is read across the boundary.
        let data: Vec<Segment> = (0..100).map(|i| seg(i * 1000, 10)).collect();
        let m = encode_map(&data, 100_000);
        assert!(m.len() > 512);
        let (segments, len) = read_map(&mut m.as_slice(), 100_000).unwrap();
        assert_eq!(len, m.len() as u64);
        assert_eq!(segments.len(), 101);
    }

    #[test]
    fn too_many_islands_merge_over_the_smallest_holes() {
        let mut segments = Vec::new();
        let mut min_gap = 0;
        for i in 0..(MAX_SEGMENTS as u64 * 3) {
            push(&mut segments, seg(i * 8192, 4096), &mut min_gap);
        }
        assert!(segments.len() < MAX_SEGMENTS);
        assert_eq!(segments[0].offset, 0);
        let last = segments.last().unwrap();
        assert_eq!(last.end(), (MAX_SEGMENTS as u64 * 3 - 1) * 8192 + 4096);
        assert!(segments.windows(2).all(|w| w[0].end() < w[1].offset));
    }

    #[test]
    fn stand_in_names_keep_the_directory() {
        assert_eq!(stand_in_name(b"rootfs/a/f"), b"rootfs/a/GNUSparseFile.0/f");
        assert_eq!(stand_in_name(b"f"), b"GNUSparseFile.0/f");
    }
}
