//! `bench-assets-relay TARGET_HOST:PORT RTT_MS STATS_FILE`: listen on a free loopback port
//! (printed as `relay http://127.0.0.1:PORT`), forward every connection to the target and
//! hold each chunk for RTT/2 in each direction before passing it on.
//!
//! Each direction of a connection is a reader thread and a writer thread joined by a FIFO
//! channel: the reader stamps a chunk with its due time as it arrives, the writer sleeps
//! until then. Chunks therefore keep their order, and a slow writer never delays the stamps
//! of later chunks (the delay is fixed, not cumulative). Bandwidth is not limited.
//!
//! Bytes seen each way, connections and HTTP responses (final status lines, not `100
//! Continue`) are written to STATS_FILE as JSON whenever a connection direction ends, so the
//! file is complete once the client has exited.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

struct Stats {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    responses: AtomicU64,
    file: String,
    write: Mutex<()>,
}

impl Stats {
    fn save(&self) {
        let _one_at_a_time = self.write.lock();
        let text = format!(
            "{{\"up\": {}, \"down\": {}, \"connections\": {}, \"responses\": {}}}\n",
            self.up.load(Ordering::SeqCst),
            self.down.load(Ordering::SeqCst),
            self.connections.load(Ordering::SeqCst),
            self.responses.load(Ordering::SeqCst)
        );
        let tmp = format!("{}.tmp", self.file);
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.file);
        }
    }
}

/// Counts final HTTP status lines in a response stream, also across chunk boundaries.
#[derive(Default)]
struct StatusLines {
    tail: Vec<u8>,
}

impl StatusLines {
    const LINE: &'static [u8] = b"HTTP/1.1 ";

    fn count(&mut self, chunk: &[u8]) -> u64 {
        let kept = self.tail.len();
        self.tail.extend_from_slice(chunk);
        let buf = &self.tail;
        let n = Self::LINE.len();
        let mut found = 0;
        // A match ending inside the carried tail was counted with the previous chunk.
        for i in 0..buf.len().saturating_sub(n) {
            if i + n + 1 > kept
                && &buf[i..i + n] == Self::LINE
                && (b'2'..=b'5').contains(&buf[i + n])
            {
                found += 1;
            }
        }
        let keep_from = buf.len().saturating_sub(n);
        self.tail.drain(..keep_from);
        found
    }
}

enum Chunk {
    Data(Vec<u8>, Instant),
    End(Instant),
}

fn spawn(f: impl FnOnce() + Send + 'static) {
    // Hundreds of connections mean a thousand threads: keep their stacks small.
    thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(f)
        .expect("spawn relay thread");
}

/// One direction: `from` → `to`, every chunk `delay` late.
fn pipe(from: TcpStream, mut to: TcpStream, delay: Duration, up: bool, stats: Arc<Stats>) {
    let (tx, rx) = mpsc::channel::<Chunk>();
    let mut reader = from.try_clone().expect("clone socket");
    spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut lines = StatusLines::default();
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Chunk::End(Instant::now() + delay));
                    break;
                }
                Ok(n) => {
                    let counter = if up { &stats.up } else { &stats.down };
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                    if !up {
                        stats
                            .responses
                            .fetch_add(lines.count(&buf[..n]), Ordering::SeqCst);
                    }
                    if tx
                        .send(Chunk::Data(buf[..n].to_vec(), Instant::now() + delay))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        stats.save();
    });
    spawn(move || {
        let wait = |due: Instant| {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        };
        while let Ok(chunk) = rx.recv() {
            match chunk {
                Chunk::Data(bytes, due) => {
                    wait(due);
                    if to.write_all(&bytes).is_err() {
                        break;
                    }
                }
                Chunk::End(due) => {
                    wait(due);
                    break;
                }
            }
        }
        // Pass the end on (half-close), and stop reading what nobody will receive.
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, rtt_ms, stats_file] = args.as_slice() else {
        eprintln!("usage: bench-assets-relay TARGET_HOST:PORT RTT_MS STATS_FILE");
        std::process::exit(2);
    };
    let rtt: f64 = rtt_ms.parse().unwrap_or_else(|_| {
        eprintln!("RTT_MS must be a number of milliseconds, got {rtt_ms:?}");
        std::process::exit(2);
    });
    let delay = Duration::from_secs_f64(rtt / 2000.0);
    let stats = Arc::new(Stats {
        up: AtomicU64::new(0),
        down: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        responses: AtomicU64::new(0),
        file: stats_file.clone(),
        write: Mutex::new(()),
    });
    stats.save();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    println!("relay http://127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(target.as_str()) else {
            continue;
        };
        stats.connections.fetch_add(1, Ordering::SeqCst);
        // Small requests must not wait for Nagle: the delay is the only one we want.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (c2, s2) = match (client.try_clone(), server.try_clone()) {
            (Ok(c), Ok(s)) => (c, s),
            _ => continue,
        };
        pipe(client, server, delay, true, stats.clone());
        pipe(s2, c2, delay, false, stats.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::StatusLines;

    #[test]
    fn counts_final_status_lines_across_chunks() {
        let mut s = StatusLines::default();
        assert_eq!(
            s.count(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            1
        );
        assert_eq!(s.count(b"body HTTP/1."), 0);
        assert_eq!(s.count(b"1 404 Not Found\r\n"), 1);
        assert_eq!(s.count(b"HTTP/1.1 "), 0);
        assert_eq!(s.count(b"503 Slow Down"), 1);
    }
}
