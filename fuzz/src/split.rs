//! Split points taken from the input itself, so the fuzzer explores where
//! reads end as well as what they carry: the first byte says how many size
//! bytes follow (1 to 4), those bytes are the chunk sizes (cycled; a 0 is
//! 1), and the rest of the input is the payload.

/// Chunk sizes and the payload they cut.
pub struct Split<'a> {
    sizes: Vec<usize>,
    /// The bytes to feed.
    pub payload: &'a [u8],
}

impl<'a> Split<'a> {
    /// Reads the sizes off the front of `data`; `None` if it is too short.
    pub fn new(data: &'a [u8]) -> Option<Split<'a>> {
        let (&count, rest) = data.split_first()?;
        let count = usize::from(count % 4) + 1;
        if rest.len() < count {
            return None;
        }
        let (sizes, payload) = rest.split_at(count);
        let sizes = sizes.iter().map(|&s| usize::from(s).max(1)).collect();
        Some(Split { sizes, payload })
    }

    /// The payload in chunks of the sizes, cycled; the last one may be short.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.payload;
        for &size in self.sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            out.push(chunk);
            rest = tail;
        }
        out
    }

    /// As [`Split::chunks`], but never more than `max` chunks: the last
    /// one takes the remainder (a whole connection costs a round trip a
    /// chunk).
    pub fn chunks_at_most(&self, max: usize) -> Vec<&'a [u8]> {
        let mut chunks = self.chunks();
        if chunks.len() > max {
            let start: usize = chunks[..max - 1].iter().map(|c| c.len()).sum();
            chunks.truncate(max - 1);
            chunks.push(&self.payload[start..]);
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cycle_and_cover_the_payload() {
        let s = Split::new(&[1, 2, 3, b'a', b'b', b'c', b'd', b'e', b'f']).unwrap();
        assert_eq!(s.chunks(), vec![&b"ab"[..], b"cde", b"f"]);
        assert_eq!(s.chunks_at_most(2), vec![&b"ab"[..], b"cdef"]);
        assert!(Split::new(&[3, 1]).is_none());
    }
}
