//! `WriteBatch`: puts and deletes applied all together or not at all.

/// One operation of a batch, borrowing its bytes from the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchOp<'a> {
    Put { key: &'a [u8], value: &'a [u8] },
    Delete { key: &'a [u8] },
}

impl<'a> BatchOp<'a> {
    pub(crate) fn key(&self) -> &'a [u8] {
        match *self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// Where one operation's bytes are in the batch's buffer: the key, then the value of a put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: usize,
    key_len: usize,
    /// `None` for a delete.
    value_len: Option<usize>,
}

/// Puts and deletes that [`Db::write`](crate::Db::write) applies atomically: readers see
/// all of them or none, and after any crash the database holds all of them or none.
/// Operations apply in order, so a later one on the same key wins.
///
/// ```
/// use talus_engine::{Options, SyncMode, WriteBatch};
///
/// let dir = tempfile::tempdir()?;
/// let db = Options::new().memory_budget(16 << 20).sync_mode(SyncMode::Never).open(dir.path())?;
/// let mut batch = WriteBatch::new();
/// batch.put(b"a", b"1");
/// batch.put(b"b", b"2");
/// batch.delete(b"c");
/// db.write(batch)?;
/// assert_eq!(db.get(b"b")?.as_deref(), Some(&b"2"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Every key and value, back to back (one allocation for the whole batch).
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n_ops` operations whose keys and values take `n_bytes`
    /// in all, so that filling it allocates nothing more.
    pub fn with_capacity(n_ops: usize, n_bytes: usize) -> Self {
        WriteBatch { bytes: Vec::with_capacity(n_bytes), entries: Vec::with_capacity(n_ops) }
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (key, value) = (key.as_ref(), value.as_ref());
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self.entries.push(Entry { start, key_len: key.len(), value_len: Some(value.len()) });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let key = key.as_ref();
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.entries.push(Entry { start, key_len: key.len(), value_len: None });
        self
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every operation (keeping the memory for the next use).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }

    /// The operations, in order.
    pub(crate) fn ops(&self) -> impl ExactSizeIterator<Item = BatchOp<'_>> + '_ {
        self.entries.iter().map(|entry| {
            let key_end = entry.start + entry.key_len;
            let key = &self.bytes[entry.start..key_end];
            match entry.value_len {
                Some(value_len) => BatchOp::Put { key, value: &self.bytes[key_end..key_end + value_len] },
                None => BatchOp::Delete { key },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_come_back_in_order_with_their_bytes() {
        let mut batch = WriteBatch::new();
        batch.put(b"a", b"1").delete(b"bb").put(b"", b"").put(b"ccc", b"value");
        let ops: Vec<BatchOp<'_>> = batch.ops().collect();
        assert_eq!(
            ops,
            [
                BatchOp::Put { key: b"a", value: b"1" },
                BatchOp::Delete { key: b"bb" },
                BatchOp::Put { key: b"", value: b"" },
                BatchOp::Put { key: b"ccc", value: b"value" },
            ]
        );
        assert_eq!(batch.len(), 4);
        let mut sized = WriteBatch::with_capacity(4, 14);
        sized.put(b"a", b"1").delete(b"bb").put(b"", b"").put(b"ccc", b"value");
        assert_eq!(sized, batch, "a batch made with capacity holds the same");
        batch.clear();
        assert!(batch.is_empty() && batch.ops().next().is_none());
    }
}
