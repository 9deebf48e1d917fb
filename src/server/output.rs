//! A connection's write buffer, with the output credit of each request
//! riding on it: a request's bytes count against its credit until the
//! socket has taken them, which is what bounds memory per slow client.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;

use super::shared::Shared;

/// Capacity kept after the buffer drains; more is freed, so an idle
/// connection costs little memory.
const KEEP_CAPACITY: usize = 16 * 1024;

struct Credit {
    /// Absolute stream offset at which these bytes are written.
    end: u64,
    shared: Arc<Shared>,
    bytes: usize,
}

#[derive(Default)]
pub struct Output {
    pub buf: Vec<u8>,
    pos: usize,
    /// Absolute offset of `buf[0]` in everything this connection wrote.
    base: u64,
    credits: VecDeque<Credit>,
    /// Close the connection once the buffer is written.
    pub close_after: bool,
}

impl Output {
    /// Ties `bytes` of a request's credit to everything appended so far.
    pub fn credit(&mut self, shared: &Arc<Shared>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let end = self.base + self.buf.len() as u64;
        self.credits.push_back(Credit {
            end,
            shared: shared.clone(),
            bytes,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Writes as much as the socket takes. Ok(true) when all is written.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while self.pos < self.buf.len() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.release_written();
        if self.pos < self.buf.len() {
            if self.pos > self.buf.len() / 2 {
                self.compact();
            }
            return Ok(false);
        }
        self.base += self.buf.len() as u64;
        self.pos = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Ok(true)
    }

    fn release_written(&mut self) {
        let written = self.base + self.pos as u64;
        while self.credits.front().is_some_and(|c| c.end <= written) {
            if let Some(c) = self.credits.pop_front() {
                c.shared.release_output(c.bytes);
            }
        }
    }

    fn compact(&mut self) {
        self.buf.drain(..self.pos);
        self.base += self.pos as u64;
        self.pos = 0;
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Unwritten output of a closing connection: let its workers go.
        for c in self.credits.drain(..) {
            c.shared.release_output(c.bytes);
        }
    }
}
