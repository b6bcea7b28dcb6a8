//! Gzip JSON Lines: the event log's file format.

use std::io::{Read, Write};

use flate2::{bufread::GzDecoder, write::GzEncoder, Compress, Compression, FlushCompress};

/// Compresses lines (each without its newline) into one gzip member of JSON Lines.
pub fn gzip_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    for line in lines {
        enc.write_all(line.as_bytes())
            .expect("writing to a Vec cannot fail");
        enc.write_all(b"\n").expect("writing to a Vec cannot fail");
    }
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Lines compressed on their own as raw deflate blocks that end byte-aligned and not final
/// (a sync flush), so that chunks compressed apart, e.g. by concurrent requests, join into one
/// gzip member ([`join_member`]) without compressing again: the way `pigz` compresses in
/// parallel. Each chunk's back-references stay inside its own text, so the joined stream is
/// valid deflate.
#[derive(Debug, Clone)]
pub struct DeflateChunk {
    deflate: Vec<u8>,
    crc: crc32fast::Hasher,
    text_len: u64,
    lines: usize,
}

impl DeflateChunk {
    /// Compresses lines (each without its newline) at [`gzip_lines`]'s level.
    pub fn of_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut text = Vec::new();
        let mut n = 0;
        for line in lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            n += 1;
        }
        COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let c = slot.get_or_insert_with(|| Compress::new(Compression::fast(), false));
            c.reset();
            Self::compress(c, text, n)
        })
    }

    fn compress(c: &mut Compress, text: Vec<u8>, n: usize) -> Self {
        let mut deflate = Vec::with_capacity(text.len() / 3 + 64);
        loop {
            let done = c.total_in() as usize;
            c.compress_vec(&text[done..], &mut deflate, FlushCompress::Sync)
                .expect("deflate into a Vec cannot fail");
            // Room left in the output means the flush is complete (zlib's `avail_out != 0`).
            if c.total_in() as usize == text.len() && deflate.len() < deflate.capacity() {
                break;
            }
            deflate.reserve(deflate.capacity().max(64));
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&text);
        Self {
            deflate,
            crc,
            text_len: text.len() as u64,
            lines: n,
        }
    }

    /// How many lines the chunk holds.
    pub fn lines(&self) -> usize {
        self.lines
    }
}

thread_local! {
    /// Each thread's deflate state, reset for every chunk: it is a few hundred KiB (window,
    /// hash chains), and allocating and freeing it per request (above the allocator's mmap
    /// threshold) cost the collect path a `mmap`, page faults and a `munmap` each time.
    static COMPRESSOR: std::cell::RefCell<Option<Compress>> = const { std::cell::RefCell::new(None) };
}

/// One gzip member of JSON Lines from chunks, their lines in chunk order: the member
/// [`gzip_lines`] would write for all the lines, up to compression.
pub fn join_member<'a>(chunks: impl IntoIterator<Item = &'a DeflateChunk>) -> Vec<u8> {
    // Magic, deflate, no flags, no time, no extra flags, OS unknown (as flate2 writes).
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    for c in chunks {
        out.extend_from_slice(&c.deflate);
        crc.combine(&c.crc);
        len += c.text_len;
    }
    // An empty final block (fixed Huffman, end of block) closes the stream.
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// What [`gunzip_text`] read from a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gunzipped {
    /// The text of every readable member, in file order.
    pub text: String,
    /// Members read.
    pub members: u64,
    /// Unreadable stretches skipped: a member torn by a writer that crashed mid-append (its
    /// events were never acknowledged), or bytes that are no gzip member. Each stretch counts
    /// once, however many bytes it spans.
    pub torn_members: u64,
    /// Where the last readable member ends: bytes after it are a torn tail.
    pub complete_len: usize,
}

impl Gunzipped {
    /// Whether every byte belonged to a readable member.
    pub fn is_clean(&self) -> bool {
        self.torn_members == 0
    }
}

/// The start of the next plausible gzip member header (magic, deflate, no reserved flags) at
/// or after `from`.
fn next_member_start(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .windows(4)
        .position(|w| w[0] == 0x1f && w[1] == 0x8b && w[2] == 8 && w[3] & 0xe0 == 0)
        .map(|i| from + i)
}

/// Decompresses a multi-member gzip file member by member: the one decoder of the event log.
///
/// A member that cannot be read (torn by a crash, then possibly followed by members a
/// restarted writer appended) is skipped whole, and reading resumes at the next member
/// header, so one torn member never hides the members after it. Skipped stretches are
/// counted; callers report them.
pub fn gunzip_text(data: &[u8]) -> Gunzipped {
    let mut out = Vec::with_capacity(data.len().saturating_mul(6));
    let mut got = Gunzipped::default();
    let mut dec = GzDecoder::new(&data[..0]);
    let (mut pos, mut in_torn) = (0usize, false);
    while pos < data.len() {
        dec.reset(&data[pos..]);
        let before = out.len();
        match dec.read_to_end(&mut out) {
            Ok(_) => {
                let consumed = data.len() - pos - dec.get_ref().len();
                if consumed == 0 {
                    break;
                }
                pos += consumed;
                got.members += 1;
                got.complete_len = pos;
                in_torn = false;
            }
            Err(_) => {
                // A torn member's text is cut somewhere, and what follows the cut is
                // the next member read as deflate data: none of it is kept.
                out.truncate(before);
                if !in_torn {
                    got.torn_members += 1;
                    in_torn = true;
                }
                match next_member_start(data, pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    // Valid UTF-8 (every line the writers write) is moved, not copied: a report reads
    // gigabytes of text.
    got.text = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(from: u32, n: u32) -> Vec<String> {
        (from..from + n).map(|i| format!("{{\"a\":{i}}}")).collect()
    }

    fn member(from: u32, n: u32) -> Vec<u8> {
        let l = lines(from, n);
        gzip_lines(l.iter().map(String::as_str))
    }

    #[test]
    fn multi_member_files_decode_whole() {
        let mut file = member(0, 2);
        file.extend(member(2, 1));
        let got = gunzip_text(&file);
        assert!(got.is_clean());
        assert_eq!((got.members, got.complete_len), (2, file.len()));
        assert_eq!(got.text, lines(0, 3).join("\n") + "\n");
        assert_eq!(gunzip_text(&[]), Gunzipped::default());
    }

    #[test]
    fn a_torn_member_between_valid_ones_is_skipped_and_counted() {
        // GIVEN valid, torn (a crash mid-append), valid (the restarted writer's append)
        let first = member(0, 3);
        let torn = member(100, 200);
        let last = member(300, 2);
        let mut file = first.clone();
        file.extend_from_slice(&torn[..torn.len() / 2]);
        file.extend_from_slice(&last);
        // WHEN read
        let got = gunzip_text(&file);
        // THEN both valid members' lines are read, nothing of the torn one, one torn counted
        assert_eq!(
            got.text,
            lines(0, 3).join("\n") + "\n" + &lines(300, 2).join("\n") + "\n"
        );
        assert_eq!((got.members, got.torn_members), (2, 1));
        assert_eq!(got.complete_len, file.len());
    }

    #[test]
    fn a_torn_tail_ends_the_complete_part_and_garbage_counts_as_torn() {
        let mut file = member(0, 2);
        let end = file.len();
        let torn = member(10, 50);
        file.extend_from_slice(&torn[..torn.len() - 3]);
        let got = gunzip_text(&file);
        assert_eq!(
            (got.members, got.torn_members, got.complete_len),
            (1, 1, end)
        );
        assert_eq!(got.text.lines().count(), 2);
        // bytes that are no member at all, between two members and at the end
        let mut file = member(0, 1);
        file.extend_from_slice(b"\0\0\0garbage");
        file.extend(member(1, 1));
        file.extend_from_slice(b"\0\0");
        let got = gunzip_text(&file);
        assert_eq!((got.members, got.torn_members), (2, 2));
        assert_eq!(got.text, "{\"a\":0}\n{\"a\":1}\n");
        assert_eq!(got.complete_len, file.len() - 2);
        // a file that is all garbage
        let got = gunzip_text(b"not gzip");
        assert_eq!((got.members, got.torn_members, got.complete_len), (0, 1, 0));
    }

    #[test]
    fn chunks_compressed_apart_join_into_one_member_of_all_their_lines() {
        // GIVEN three chunks compressed separately (one empty, one large enough for several
        // deflate blocks)
        let a = lines(0, 3);
        let b: Vec<String> = (0..20_000).map(|i| format!("{{\"b\":{i}}}")).collect();
        let chunks = [
            DeflateChunk::of_lines(a.iter().map(String::as_str)),
            DeflateChunk::of_lines([]),
            DeflateChunk::of_lines(b.iter().map(String::as_str)),
        ];
        assert_eq!(
            chunks.iter().map(DeflateChunk::lines).sum::<usize>(),
            20_003
        );
        // WHEN joined
        let member = join_member(&chunks);
        // THEN the file is one clean member holding every line in chunk order
        let got = gunzip_text(&member);
        assert!(got.is_clean());
        assert_eq!((got.members, got.complete_len), (1, member.len()));
        assert_eq!(got.text, a.join("\n") + "\n" + &b.join("\n") + "\n");
        // AND a member cut short is torn, as a `gzip_lines` member would be
        let got = gunzip_text(&member[..member.len() - 4]);
        assert_eq!((got.members, got.torn_members), (0, 1));
        // AND no chunk at all is a valid empty member
        assert_eq!(gunzip_text(&join_member([])).members, 1);
    }

    #[test]
    fn a_reused_compressor_never_refers_back_to_an_earlier_chunk() {
        // GIVEN chunks compressed one after another on this thread (one deflate state, reset
        // between them), the later ones repeating the earlier text (which a back-reference
        // across chunks would point at)
        let text: Vec<String> = (0..500)
            .map(|i| format!("{{\"same\":{}}}", i % 7))
            .collect();
        let chunks: Vec<DeflateChunk> = (0..4)
            .map(|_| DeflateChunk::of_lines(text.iter().map(String::as_str)))
            .collect();
        // THEN each chunk is the same bytes as the first, alone
        assert!(chunks.iter().all(|c| c.deflate == chunks[0].deflate));
        // AND joined in reverse, or the last alone, they decode whole
        let reversed: Vec<&DeflateChunk> = chunks.iter().rev().collect();
        let got = gunzip_text(&join_member(reversed));
        assert!(got.is_clean());
        assert_eq!(got.text, (text.join("\n") + "\n").repeat(4));
        let got = gunzip_text(&join_member([&chunks[3]]));
        assert_eq!(got.text, text.join("\n") + "\n");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        // GIVEN a member whose text holds a byte that is not UTF-8
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":\"\xff\"}\n").unwrap();
        let file = enc.finish().unwrap();
        // WHEN it is read THEN the byte becomes U+FFFD and the member counts as read
        let got = gunzip_text(&file);
        assert_eq!(got.text, "{\"a\":\"\u{fffd}\"}\n");
        assert!(got.is_clean());
    }
}
