//! Reading event lines from files and standard input, with a bound on line
//! length so that a runaway line cannot exhaust memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

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
