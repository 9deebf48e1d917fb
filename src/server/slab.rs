//! Connections indexed by token, with a generation per slot so that a
//! message or timer for a closed connection never reaches the one that
//! reused its slot.

use super::conn::Conn;
use super::message::ConnId;
use super::poller::Token;

#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

#[derive(Default)]
pub struct Slab {
    slots: Vec<Slot>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    /// The id the next inserted connection will get.
    pub fn next_id(&mut self) -> ConnId {
        let index = match self.free.last() {
            Some(&i) => i,
            None => {
                self.slots.push(Slot::default());
                self.free.push(self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        ConnId {
            token: Token(index),
            generation: self.slots[index].generation,
        }
    }

    /// Inserts at the id `next_id` returned.
    pub fn insert(&mut self, conn: Conn) {
        let Some(index) = self.free.pop() else { return };
        self.slots[index].conn = Some(conn);
        self.len += 1;
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut Conn> {
        self.slots.get_mut(token.0)?.conn.as_mut()
    }

    /// The connection, if it is still the one `id` named.
    pub fn get_id(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.token.0)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_mut()
    }

    pub fn generation(&self, token: Token) -> Option<u32> {
        self.slots
            .get(token.0)
            .filter(|s| s.conn.is_some())
            .map(|s| s.generation)
    }

    pub fn remove(&mut self, token: Token) -> Option<Conn> {
        let slot = self.slots.get_mut(token.0)?;
        let conn = slot.conn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(token.0);
        self.len -= 1;
        Some(conn)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn tokens(&self) -> Vec<Token> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].conn.is_some())
            .map(Token)
            .collect()
    }
}
