//! Bounded capture of an output stream.

/// Keeps the first `limit` bytes of a stream and counts the rest.
pub(crate) struct Capture {
    kept: Vec<u8>,
    total: u64,
    limit: usize,
}

/// Bytes a stream may write past its limit before the code is killed.
const GRACE_MIN: u64 = 1 << 20;

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            kept: Vec::new(),
            total: 0,
            limit,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..room.min(data.len())]);
        self.total = self.total.saturating_add(data.len() as u64);
    }

    /// The stream went on well past its limit: time to kill the writer.
    pub(crate) fn flooded(&self) -> bool {
        let limit = self.limit as u64;
        self.total > limit.saturating_add(limit.max(GRACE_MIN))
    }

    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        self.kept.windows(needle.len()).any(|w| w == needle)
    }

    /// The kept text, with a marker saying how much was dropped.
    pub(crate) fn finish(self) -> String {
        let dropped = self.total - self.kept.len() as u64;
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[output truncated: {dropped} more bytes]\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::Capture;

    #[test]
    fn keeps_the_head_and_marks_the_rest() {
        let mut capture = Capture::new(4);
        capture.push(b"abc");
        capture.push(b"defgh");
        assert!(!capture.flooded());
        assert_eq!(capture.finish(), "abcd\n[output truncated: 4 more bytes]\n");
    }

    #[test]
    fn floods_after_the_grace() {
        let mut capture = Capture::new(10);
        capture.push(&vec![b'x'; (1 << 20) + 10]);
        assert!(!capture.flooded());
        capture.push(b"x");
        assert!(capture.flooded());
    }

    #[test]
    fn short_output_is_untouched() {
        let mut capture = Capture::new(100);
        capture.push("héllo\n".as_bytes());
        assert!(!capture.contains(b"MemoryError"));
        assert_eq!(capture.finish(), "héllo\n");
    }
}
