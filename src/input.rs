//! Reading event lines from files and standard input, with a bound on line
//! length so that a runaway line cannot exhaust memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use lifewatch_core::MAX_LINE_BYTES;

/// One line of input.
pub enum Line<'a> {
    /// The line's bytes, without the newline (and without a trailing `\r`).
    Text(&'a [u8]),
    /// A line longer than [`MAX_LINE_BYTES`]; its length in bytes.
    TooLong(usize),
}

/// Calls `each` with every line of `reader` and its 1-based number.
/// Lines that fit in the reader's buffer are passed without copying.
pub fn for_each_line(mut reader: impl BufRead, mut each: impl FnMut(u64, Line<'_>)) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_len: usize = 0;
    let mut number: u64 = 0;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            if pending_len > 0 {
                number += 1;
                emit(&mut each, number, &pending, pending_len);
            }
            return Ok(());
        }
        match memchr::memchr(b'\n', buffer) {
            Some(position) => {
                number += 1;
                if pending_len == 0 {
                    emit(&mut each, number, &buffer[..position], position);
                } else {
                    pending_len += position;
                    if pending_len <= MAX_LINE_BYTES + 2 {
                        pending.extend_from_slice(&buffer[..position]);
                    }
                    emit(&mut each, number, &pending, pending_len);
                    pending.clear();
                    pending_len = 0;
                }
                reader.consume(position + 1);
            }
            None => {
                let length = buffer.len();
                pending_len += length;
                // Keep at most one byte more than the limit: enough to know
                // the line is too long without holding all of it.
                if pending.len() <= MAX_LINE_BYTES + 1 {
                    let room = MAX_LINE_BYTES + 2 - pending.len();
                    pending.extend_from_slice(&buffer[..length.min(room)]);
                }
                reader.consume(length);
            }
        }
    }
}

/// The UTF-8 byte order mark, which some editors write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` holds the whole line when `length` is at most the limit plus one
/// (room for a `\r`); longer lines are reported by length only. A byte order
/// mark at the start of the first line is not part of the event: it is
/// skipped there (and only there, where it means "this file is UTF-8").
fn emit(each: &mut impl FnMut(u64, Line<'_>), number: u64, bytes: &[u8], length: usize) {
    if length > MAX_LINE_BYTES + 1 {
        return each(number, Line::TooLong(length));
    }
    let bytes = if number == 1 { bytes.strip_prefix(BOM).unwrap_or(bytes) } else { bytes };
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.len() > MAX_LINE_BYTES {
        each(number, Line::TooLong(bytes.len()));
    } else {
        each(number, Line::Text(bytes));
    }
}

/// Whether a line holds nothing but white space (skipped, not rejected).
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| byte.is_ascii_whitespace())
}

/// An input named on the command line: a file, or `-` for standard input.
pub struct Input {
    /// How to refer to it in messages.
    pub name: String,
    reader: Box<dyn Read>,
}

impl Input {
    /// Opens `path`, or standard input for `-`.
    pub fn open(path: &Path) -> anyhow::Result<Input> {
        if path == Path::new("-") {
            return Ok(Input { name: "<stdin>".to_string(), reader: Box::new(io::stdin()) });
        }
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Input { name: path.display().to_string(), reader: Box::new(file) })
    }

    /// A buffered reader over it.
    pub fn into_reader(self) -> BufReader<Box<dyn Read>> {
        BufReader::with_capacity(256 * 1024, self.reader)
    }

    /// A buffered reader over it that adds every byte it reads to `read`
    /// (for progress; it runs ahead of the lines handed out by at most the
    /// buffer's size).
    pub fn into_counted_reader(self, read: &AtomicU64) -> BufReader<Counted<'_>> {
        BufReader::with_capacity(256 * 1024, Counted { reader: self.reader, read })
    }
}

/// A reader that counts the bytes read through it.
pub struct Counted<'a> {
    reader: Box<dyn Read>,
    read: &'a AtomicU64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = self.reader.read(buffer)?;
        self.read.fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }
}

/// The total size in bytes of `inputs` when every one is a regular file;
/// `None` when one is standard input, a pipe or cannot be looked at (opening
/// it reports why).
pub fn total_size(inputs: &[PathBuf]) -> Option<u64> {
    inputs.iter().try_fold(0u64, |total, path| {
        if path == Path::new("-") {
            return None;
        }
        let metadata = std::fs::metadata(path).ok()?;
        metadata.is_file().then(|| total.saturating_add(metadata.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], capacity: usize) -> Vec<(u64, Result<Vec<u8>, usize>)> {
        let mut out = Vec::new();
        let reader = BufReader::with_capacity(capacity, input);
        for_each_line(reader, |number, line| {
            out.push((
                number,
                match line {
                    Line::Text(bytes) => Ok(bytes.to_vec()),
                    Line::TooLong(length) => Err(length),
                },
            ))
        })
        .unwrap();
        out
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        for capacity in [1, 2, 3, 7, 64] {
            let got = lines(b"ab\r\n\ncdef\nlast", capacity);
            assert_eq!(
                got,
                vec![
                    (1, Ok(b"ab".to_vec())),
                    (2, Ok(vec![])),
                    (3, Ok(b"cdef".to_vec())),
                    (4, Ok(b"last".to_vec()))
                ],
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn skips_a_byte_order_mark_on_the_first_line_only() {
        for capacity in [1, 2, 3, 64] {
            let got = lines(b"\xEF\xBB\xBFab\n\xEF\xBB\xBFcd\n", capacity);
            assert_eq!(
                got,
                vec![(1, Ok(b"ab".to_vec())), (2, Ok(b"\xEF\xBB\xBFcd".to_vec()))],
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn a_counted_reader_counts_every_byte_and_sizes_are_known_for_files_only() {
        let read = AtomicU64::new(0);
        let input = Input { name: "test".to_string(), reader: Box::new(&b"ab\ncd\n\n"[..]) };
        let mut count = 0;
        for_each_line(input.into_counted_reader(&read), |_, _| count += 1).unwrap();
        assert_eq!((count, read.load(Ordering::Relaxed)), (3, 7));
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let size = std::fs::metadata(&file).unwrap().len();
        assert_eq!(total_size(&[file.clone(), file.clone()]), Some(2 * size));
        assert_eq!(total_size(&[file.clone(), PathBuf::from("-")]), None);
        assert_eq!(total_size(&[file, PathBuf::from("/nonexistent/file")]), None);
        assert_eq!(total_size(&[PathBuf::from(env!("CARGO_MANIFEST_DIR"))]), None);
    }

    #[test]
    fn flags_overlong_lines_without_keeping_them() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nok\n");
        let got = lines(&input, 8192);
        assert_eq!(got, vec![(1, Err(MAX_LINE_BYTES + 10)), (2, Ok(b"ok".to_vec()))]);
        let exact = vec![b'y'; MAX_LINE_BYTES];
        let got = lines(&exact, 8192);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0].1, Ok(ref bytes) if bytes.len() == MAX_LINE_BYTES));
    }
}
