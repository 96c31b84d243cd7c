//! The compact lists of event seqs kept in each entity's row (`entities.events`),
//! through which `show` finds an entity's events without an index on the
//! event log.
//!
//! A list is a sequence of LEB128 varints, each `v = n << 1 | absolute`: with
//! `absolute` set, `n` is a seq; without, `n` is the distance from the seq
//! before it. The writer appends one segment per batch (its first seq
//! absolute, the others as distances), so a segment can be appended to the
//! stored list in SQL without reading it; seqs only grow, so no value is 0 and
//! no byte is NUL.

/// Appends the segment of `seqs` (ascending) to `out`.
pub(crate) fn encode_segment(seqs: impl IntoIterator<Item = i64>, out: &mut Vec<u8>) {
    let mut previous: Option<i64> = None;
    for seq in seqs {
        let value = match previous {
            Some(previous) if seq > previous => ((seq - previous) as u64) << 1,
            _ => ((seq as u64) << 1) | 1,
        };
        push_varint(value, out);
        previous = Some(seq);
    }
}

pub(crate) fn push_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The LEB128 varint at the start of `bytes` and the bytes after it; `None`
/// when it is truncated or longer than 64 bits.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index as u32);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

/// The seqs of a stored list, in the order they were appended; `None` when
/// the bytes are not a list (a truncated varint).
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<i64>> {
    let mut seqs = Vec::new();
    let mut previous: i64 = 0;
    let mut value: u64 = 0;
    let mut shift = 0u32;
    for &byte in bytes {
        if shift >= 64 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 != 0 {
            shift += 7;
            continue;
        }
        let n = (value >> 1) as i64;
        previous = if value & 1 == 1 { n } else { previous.checked_add(n)? };
        seqs.push(previous);
        value = 0;
        shift = 0;
    }
    (shift == 0).then_some(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_appended_decode_to_every_seq() {
        let mut list = Vec::new();
        encode_segment([1, 2, 130, 100_000], &mut list);
        encode_segment([100_001], &mut list);
        encode_segment([], &mut list);
        encode_segment([5_000_000_000, 5_000_000_200], &mut list);
        assert_eq!(decode(&list).unwrap(), vec![1, 2, 130, 100_000, 100_001, 5_000_000_000, 5_000_000_200]);
        assert!(!list.contains(&0), "no NUL byte");
        assert_eq!(decode(&[]).unwrap(), Vec::<i64>::new());
        assert_eq!(decode(&[0x81]), None);
    }

    #[test]
    fn varints_read_back() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX) << 3, u64::MAX] {
            let mut bytes = Vec::new();
            push_varint(value, &mut bytes);
            bytes.push(42);
            assert_eq!(read_varint(&bytes), Some((value, &[42u8][..])));
        }
        assert_eq!(read_varint(&[0x80]), None);
        assert_eq!(read_varint(&[0xff; 11]), None);
    }
}
