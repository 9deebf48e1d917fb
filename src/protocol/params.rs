//! The params (CGI variables) of one request, shared by every protocol.
//!
//! A request has a few dozen params and the handler reads a handful, so
//! [`Params`] keeps the block as it came off the wire (one buffer, one
//! allocation per request) plus the byte ranges of each name and value,
//! and looks names up by a linear scan from the end (the last repeat wins).
//! [`ParamsBuffer`] gathers a FastCGI PARAMS stream under a size limit, so
//! a peer that sends too much meets `431`, never an unbounded buffer.

use std::ops::Range;

use super::fastcgi::{self, PairRange};
use super::Error;

/// Room for the params nginx sends with `fastcgi_params`, so one
/// allocation holds a typical request's ranges.
const TYPICAL_PAIRS: usize = 32;

/// One buffer plus (name, value) ranges into it: one allocation per request, zero copy from the wire.
///
/// ```
/// use fastgate::protocol::params::Params;
/// let p = Params::from_pairs([(&b"REQUEST_METHOD"[..], &b"GET"[..])]);
/// assert_eq!(p.get_str("REQUEST_METHOD"), Some("GET"));
/// assert_eq!(p.get("request_method"), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    buf: Vec<u8>,
    entries: Vec<PairRange>,
}

impl Params {
    /// From a complete FastCGI PARAMS block (all PARAMS content of one request concatenated).
    pub fn from_fastcgi(block: Vec<u8>) -> Result<Params, Error> {
        Params::from_fastcgi_reusing(block, Vec::with_capacity(TYPICAL_PAIRS))
    }

    /// As [`Params::from_fastcgi`], filling `entries` (emptied first), a
    /// vector an earlier request gave back ([`Params::into_buffers`]).
    pub fn from_fastcgi_reusing(
        block: Vec<u8>,
        mut entries: Vec<PairRange>,
    ) -> Result<Params, Error> {
        entries.clear();
        for pair in fastcgi::pair_ranges(&block) {
            entries.push(pair?);
        }
        Ok(Params {
            buf: block,
            entries,
        })
    }

    /// The two vectors, emptied, for a host that reuses them for the next
    /// request's params: allocated on the thread that reads requests and
    /// dropped on the one that ran the handler, they would otherwise cost
    /// that thread's allocator a foreign free each, every request.
    pub fn into_buffers(self) -> SpareBuffers {
        let (mut buf, mut entries) = (self.buf, self.entries);
        buf.clear();
        entries.clear();
        SpareBuffers { buf, entries }
    }

    /// From the content of an SCGI netstring (NAME\0VALUE\0...).
    pub fn from_scgi(block: Vec<u8>) -> Result<Params, Error> {
        let entries = scgi_ranges(&block)?;
        Ok(Params {
            buf: block,
            entries,
        })
    }

    /// Builds params from borrowed pairs, copying them into one buffer.
    pub fn from_pairs<'a, I: IntoIterator<Item = (&'a [u8], &'a [u8])>>(pairs: I) -> Params {
        let mut params = Params::default();
        for (name, value) in pairs {
            params.push(name, value);
        }
        params
    }

    /// Appends one pair (after the existing ones, so it wins a repeat).
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let name_range = append(&mut self.buf, name);
        let value_range = append(&mut self.buf, value);
        self.entries.push((name_range, value_range));
    }

    /// The value of `name` (exact, case-sensitive); when a name repeats, the last one wins.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n.len() == name.len() && &self.buf[n.clone()] == name)
            .map(|(_, v)| &self.buf[v.clone()])
    }

    /// The values of several names in one scan (a repeat: the last wins),
    /// for code that reads a few params of every request.
    pub fn get_each<const N: usize>(&self, names: [&str; N]) -> [Option<&[u8]>; N] {
        let mut found = [None; N];
        for (n, v) in &self.entries {
            let name = &self.buf[n.clone()];
            for (want, slot) in names.iter().zip(found.iter_mut()) {
                if want.len() == name.len() && want.as_bytes() == name {
                    *slot = Some(&self.buf[v.clone()]);
                }
            }
        }
        found
    }

    /// The value of `name` as text; `None` if absent or not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every pair in wire order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(n, v)| (&self.buf[n.clone()], &self.buf[v.clone()]))
    }

    /// The number of pairs, repeats included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no pair at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of names and values (what --max-params-bytes bounds).
    pub fn byte_len(&self) -> usize {
        self.entries.iter().map(|(n, v)| n.len() + v.len()).sum()
    }
}

fn append(buf: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = buf.len();
    buf.extend_from_slice(bytes);
    start..buf.len()
}

/// The ranges of an SCGI block: NUL-terminated names and values, alternating.
fn scgi_ranges(block: &[u8]) -> Result<Vec<PairRange>, Error> {
    if block.last().is_some_and(|&b| b != 0) {
        return Err(bad_scgi("params do not end with a NUL"));
    }
    let mut fields = memchr::memchr_iter(0, block).scan(0, |start, end| {
        let field = *start..end;
        *start = end + 1;
        Some(field)
    });
    let mut entries = Vec::new();
    while let Some(name) = fields.next() {
        let value = fields
            .next()
            .ok_or_else(|| bad_scgi("odd number of NUL-terminated fields"))?;
        entries.push((name, value));
    }
    Ok(entries)
}

fn bad_scgi(what: &str) -> Error {
    Error::BadScgiHeader(what.to_string())
}

/// Accumulates a request's PARAMS stream up to a limit; past it the rest is discarded as it arrives.
///
/// The limit bounds the raw block (names, values and their length bytes),
/// which is what this buffer holds; it is at least [`Params::byte_len`].
#[derive(Debug)]
pub struct ParamsBuffer {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
    /// The ranges vector the finished params fill (reused, or new).
    entries: Vec<PairRange>,
}

/// The emptied vectors of a request's params, kept to be filled again.
#[derive(Debug, Default)]
pub struct SpareBuffers {
    buf: Vec<u8>,
    entries: Vec<PairRange>,
}

impl SpareBuffers {
    /// The memory they hold.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.entries.capacity() * std::mem::size_of::<PairRange>()
    }
}

impl ParamsBuffer {
    /// An empty buffer that holds at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ParamsBuffer::reusing(limit, SpareBuffers::default())
    }

    /// An empty buffer in the vectors of a finished request's params.
    pub fn reusing(limit: usize, spare: SpareBuffers) -> Self {
        ParamsBuffer {
            buf: spare.buf,
            limit,
            overflowed: false,
            entries: spare.entries,
        }
    }

    /// Adds a piece of the PARAMS stream. After overflow: drops bytes, keeps a flag, frees the buffer.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.overflowed {
            return;
        }
        // No underflow: the buffer never holds more than `limit`.
        if chunk.len() > self.limit - self.buf.len() {
            self.overflowed = true;
            self.buf = Vec::new();
            return;
        }
        let needed = self.buf.len() + chunk.len();
        if needed > self.buf.capacity() {
            // Doubling, but never past the limit: the capacity is what a
            // host counts against its budgets.
            let target = needed.max(self.buf.capacity() * 2).min(self.limit);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The memory it holds (its capacity), which a host counts against
    /// budgets wider than one request.
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// True once more than `limit` bytes were pushed.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// ParamsTooLarge if overflowed, else Params::from_fastcgi.
    pub fn finish(self) -> Result<Params, Error> {
        if self.overflowed {
            return Err(Error::ParamsTooLarge { limit: self.limit });
        }
        match self.entries.capacity() {
            0 => Params::from_fastcgi(self.buf),
            _ => Params::from_fastcgi_reusing(self.buf, self.entries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn params_built_in_reused_vectors_equal_fresh_ones() {
        let first = fcgi_block(&[(b"A", b"1"), (b"LONGER_NAME", b"x".repeat(300).as_slice())]);
        let second = fcgi_block(&[(b"B", b"2"), (b"A", b"3")]);
        let mut buffer = ParamsBuffer::new(4096);
        buffer.push(&first);
        let spare = buffer.finish().unwrap().into_buffers();
        let kept = spare.capacity();
        assert!(kept >= first.len(), "{kept}");
        let mut reused = ParamsBuffer::reusing(4096, spare);
        assert_eq!(
            reused.held(),
            reused.held().max(first.len()),
            "capacity carried over"
        );
        reused.push(&second);
        let p = reused.finish().unwrap();
        let fresh = Params::from_fastcgi(second.clone()).unwrap();
        let pairs = |p: &Params| {
            p.iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&p), pairs(&fresh));
        assert_eq!(p.get("A"), Some(&b"3"[..]));
    }

    #[test]
    fn get_each_agrees_with_get_repeats_included() {
        let p = Params::from_pairs([
            (&b"A"[..], &b"1"[..]),
            (b"BB", b"2"),
            (b"A", b"3"),
            (b"AB", b""),
        ]);
        let [a, bb, ab, missing] = p.get_each(["A", "BB", "AB", "B"]);
        assert_eq!(
            (a, bb, ab, missing),
            (Some(&b"3"[..]), Some(&b"2"[..]), Some(&b""[..]), None)
        );
        assert_eq!(a, p.get("A"));
    }

    fn fcgi_block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (n, v) in pairs {
            fastcgi::encode_pair(&mut block, n, v);
        }
        block
    }

    #[test]
    fn fastcgi_block_lookup_last_wins() {
        let block = fcgi_block(&[(b"A", b"1"), (b"B", b""), (b"A", b"2")]);
        let p = Params::from_fastcgi(block).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.get("A"), Some(&b"2"[..]));
        assert_eq!(p.get("B"), Some(&b""[..]));
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("AB"), None);
        assert_eq!(p.byte_len(), 5);
        let order: Vec<_> = p.iter().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(order, vec![b"A".to_vec(), b"B".to_vec(), b"A".to_vec()]);
    }

    #[test]
    fn fastcgi_truncated_block_is_bad_pair() {
        let mut block = fcgi_block(&[(b"NAME", b"VALUE")]);
        block.pop();
        assert_eq!(Params::from_fastcgi(block).unwrap_err(), Error::BadPair);
        assert_eq!(
            Params::from_fastcgi(vec![0x80, 0, 0]).unwrap_err(),
            Error::BadPair
        );
    }

    #[test]
    fn get_str_rejects_non_utf8() {
        let p = Params::from_pairs([(&b"X"[..], &b"\xff"[..]), (&b"Y"[..], &b"ok"[..])]);
        assert_eq!(p.get_str("X"), None);
        assert_eq!(p.get_str("Y"), Some("ok"));
        assert!(!p.is_empty());
        assert!(Params::default().is_empty());
    }

    #[test]
    fn scgi_blocks() {
        let p =
            Params::from_scgi(b"CONTENT_LENGTH\x0027\x00SCGI\x001\x00E\x00\x00".to_vec()).unwrap();
        assert_eq!(p.get_str("CONTENT_LENGTH"), Some("27"));
        assert_eq!(p.get_str("SCGI"), Some("1"));
        assert_eq!(p.get_str("E"), Some(""));
        assert_eq!(p.len(), 3);
        assert!(Params::from_scgi(Vec::new()).unwrap().is_empty());
        let bad: [&[u8]; 3] = [b"A\x00B", b"A\x00", b"A\x00B\x00C\x00"];
        for b in bad {
            assert!(
                matches!(Params::from_scgi(b.to_vec()), Err(Error::BadScgiHeader(_))),
                "{b:?}"
            );
        }
    }

    #[test]
    fn buffer_overflow_discards_and_reports() {
        let block = fcgi_block(&[(b"NAME", b"VALUE")]);
        let mut exact = ParamsBuffer::new(block.len());
        exact.push(&block[..3]);
        exact.push(&block[3..]);
        assert!(!exact.overflowed());
        assert_eq!(exact.finish().unwrap().get("NAME"), Some(&b"VALUE"[..]));

        let mut small = ParamsBuffer::new(block.len() - 1);
        small.push(&block[..3]);
        small.push(&block[3..]);
        small.push(&block);
        assert!(small.overflowed());
        assert_eq!(small.buf.capacity(), 0);
        assert_eq!(
            small.finish().unwrap_err(),
            Error::ParamsTooLarge {
                limit: block.len() - 1
            }
        );
    }

    #[test]
    fn a_buffer_never_holds_more_than_its_limit() {
        let mut b = ParamsBuffer::new(100_000);
        for _ in 0..99 {
            b.push(&[b'x'; 1000]);
            assert!(b.held() <= 100_000, "{}", b.held());
        }
        b.push(&[b'x'; 1000]);
        assert_eq!(b.held(), 100_000);
        b.push(b"y");
        assert_eq!((b.overflowed(), b.held()), (true, 0));
    }

    proptest! {
        #[test]
        fn fastcgi_round_trip(pairs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), proptest::collection::vec(any::<u8>(), 0..200)), 0..20)) {
            let borrowed: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
            let p = Params::from_fastcgi(fcgi_block(&borrowed)).unwrap();
            prop_assert_eq!(p.iter().collect::<Vec<_>>(), borrowed.clone());
            let q = Params::from_pairs(borrowed.iter().copied());
            prop_assert_eq!(q.iter().collect::<Vec<_>>(), borrowed);
            prop_assert_eq!(p.byte_len(), q.byte_len());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Params::from_fastcgi(bytes.clone());
            let _ = Params::from_scgi(bytes);
        }
    }
}
