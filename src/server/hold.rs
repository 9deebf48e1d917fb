//! Output held by the loop until its request's input has ended.
//!
//! nginx stops sending a request's body once the response headers reach it
//! (DESIGN.md, "Response timing"), so no byte of a response leaves before
//! the request's input has ended. Whoever answers (a worker's `Response`,
//! an async handler's `Reply`) hands its output to the loop as it goes; the
//! loop keeps what comes too early here, in memory up to [`HOLD_MEMORY`] and
//! then in a spool file within `--max-temp-bytes`, and gives the writer its
//! output credit back at once, so a handler that writes before it reads
//! never waits. Once the input has ended the loop releases the held output
//! at the client's pace, a chunk at a time as the connection's buffer
//! drains ([`Held::next_chunk`]).

use std::io;
use std::sync::Arc;

use super::access_log::{note_output, Entry};
use super::message::End;
use super::shared::Shared;
use super::spool::{SpoolFile, TempSpace};
use crate::protocol::cgi_response::Head;

/// Held output kept in memory before it spills to a temporary file.
pub const HOLD_MEMORY: usize = 256 * 1024;
/// Held output moves into a connection's buffer while less than this is
/// unwritten there.
pub const RELEASE_ROOM: usize = 256 * 1024;
/// The most released into a connection's buffer at once.
const CHUNK: usize = 64 * 1024;

/// One request's held output, in order: head, body bytes, end.
#[derive(Default)]
pub struct Held {
    head: Option<Head>,
    memory: Vec<u8>,
    /// Bytes of `memory` already released.
    memory_pos: usize,
    /// Bytes that came after `memory` filled up.
    file: Option<SpoolFile>,
    end: Option<End>,
}

/// What to emit next.
pub struct Chunk {
    pub head: Option<Head>,
    pub body: Vec<u8>,
    pub end: End,
}

/// What became of a piece of output [`hold`] kept back.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Held: it goes out once the input has ended.
    Held,
    /// The handler failed before any byte reached the client: the
    /// connection answers a clean 500 instead.
    FailedUnseen,
    /// No room to hold it (`--max-temp-bytes`): the connection answers 503
    /// or cuts the response.
    NoRoom,
}

/// Holds a handler's output that may not go out yet (its request's input
/// still arriving, or held output ahead of it): logged, its credit given
/// back to the writer at once, kept in `held`. `head_sent`: bytes of the
/// response already reached the client.
pub fn hold(
    held: &mut Option<Box<Held>>,
    shared: &Shared,
    log: &mut Option<Box<Entry>>,
    out: Chunk,
    head_sent: bool,
    space: &Arc<TempSpace>,
) -> Kept {
    note_output(log, out.head.as_ref().map(|h| h.status), out.body.len());
    shared.release_output(out.body.len());
    let failed_unseen = out.end == End::Failed && !head_sent;
    let held = held.get_or_insert_default();
    match held.stash(out.head, &out.body, out.end, space) {
        Ok(()) if failed_unseen => Kept::FailedUnseen,
        Ok(()) => Kept::Held,
        Err(e) => {
            log::warn!("request {}: holding its output: {e}", shared.req.key);
            Kept::NoRoom
        }
    }
}

impl Held {
    /// Keeps one piece of output; fails only past `--max-temp-bytes`.
    pub fn stash(
        &mut self,
        head: Option<Head>,
        body: &[u8],
        end: End,
        space: &Arc<TempSpace>,
    ) -> io::Result<()> {
        if head.is_some() {
            self.head = head;
        }
        if self.file.is_none() && self.memory.len() + body.len() <= HOLD_MEMORY {
            self.memory.extend_from_slice(body);
        } else {
            let file = match self.file.as_mut() {
                Some(f) => f,
                None => self.file.insert(SpoolFile::create(space, None)?),
            };
            file.append(body)?;
        }
        if end != End::No {
            self.end = Some(end);
        }
        Ok(())
    }

    /// The next piece to emit (the head with the first), or None when
    /// everything held so far went out; the last piece carries the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        let body = self.next_bytes()?;
        let drained = body.is_empty() && self.unread() == 0;
        let end = match (drained, self.end) {
            (true, Some(end)) => {
                self.end = None;
                end
            }
            _ => End::No,
        };
        if body.is_empty() && end == End::No && self.head.is_none() {
            return Ok(None);
        }
        let head = self.head.take();
        Ok(Some(Chunk { head, body, end }))
    }

    fn next_bytes(&mut self) -> io::Result<Vec<u8>> {
        if self.memory_pos < self.memory.len() {
            let to = (self.memory_pos + CHUNK).min(self.memory.len());
            let body = self.memory[self.memory_pos..to].to_vec();
            self.memory_pos = to;
            if to == self.memory.len() {
                self.memory = Vec::new();
                self.memory_pos = 0;
            }
            return Ok(body);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        let mut body = vec![0; CHUNK.min(file.unread() as usize)];
        let n = file.read(&mut body)?;
        body.truncate(n);
        if file.unread() == 0 {
            self.file = None;
        }
        Ok(body)
    }

    fn unread(&self) -> usize {
        let file = self.file.as_ref().map_or(0, |f| f.unread() as usize);
        self.memory.len() - self.memory_pos + file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16) -> Head {
        Head {
            status,
            reason: "".into(),
            headers: Vec::new(),
        }
    }

    fn drain(h: &mut Held) -> (Vec<u16>, Vec<u8>, Vec<End>) {
        let (mut heads, mut body, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(c) = h.next_chunk().unwrap() {
            heads.extend(c.head.map(|h| h.status));
            body.extend_from_slice(&c.body);
            ends.push(c.end);
        }
        (heads, body, ends)
    }

    #[test]
    fn gives_back_in_order_in_chunks_with_the_end_last() {
        let space = TempSpace::new(std::env::temp_dir(), u64::MAX);
        let mut h = Held::default();
        let a = vec![1u8; 200_000];
        let b = vec![2u8; 300_000];
        h.stash(Some(head(201)), &a, End::No, &space).unwrap();
        h.stash(None, &b, End::Complete, &space).unwrap();
        assert!(space.used() > 0, "past 256 KiB it spills");
        let (heads, body, ends) = drain(&mut h);
        assert_eq!(heads, vec![201]);
        assert_eq!(body.len(), 500_000);
        assert!(body[..200_000].iter().all(|&x| x == 1) && body[200_000..].iter().all(|&x| x == 2));
        assert_eq!(ends.last(), Some(&End::Complete));
        assert!(ends[..ends.len() - 1].iter().all(|&e| e == End::No));
        assert_eq!(space.used(), 0, "the spool file is gone once read");
    }

    #[test]
    fn a_head_alone_or_an_end_alone_still_goes_out() {
        let space = TempSpace::new(std::env::temp_dir(), u64::MAX);
        let mut h = Held::default();
        h.stash(Some(head(204)), b"", End::Complete, &space)
            .unwrap();
        let (heads, body, ends) = drain(&mut h);
        assert_eq!(
            (heads, body.len(), ends),
            (vec![204], 0, vec![End::Complete])
        );
        assert!(h.next_chunk().unwrap().is_none());
    }

    #[test]
    fn past_the_temp_budget_it_fails() {
        let space = TempSpace::new(std::env::temp_dir(), 1000);
        let mut h = Held::default();
        let e = h
            .stash(None, &vec![0u8; HOLD_MEMORY + 2000], End::No, &space)
            .unwrap_err();
        assert!(super::super::spool::is_no_space(&e));
    }
}
