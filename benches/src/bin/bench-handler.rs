//! A compiled Azure custom handler, the kind custom handlers are usually
//! written as (Go, Rust): listens on 127.0.0.1 at
//! `FUNCTIONS_CUSTOMHANDLER_PORT` and answers every HTTP/1.1 request with
//! `200 ok`, keeping connections alive. Standard library only, so that its
//! own start is the process's: the cluster benchmark measures a worker's
//! warm restart with it beside the Node.js handler.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("bench-handler: FUNCTIONS_CUSTOMHANDLER_PORT is not a port number");
            std::process::exit(2)
        });
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("bench-handler: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // The head: a request line and headers up to an empty line.
        let mut length = 0usize;
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = line.trim_end();
            if text.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((name, value)) = text.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if out.write_all(answer).is_err() {
            return;
        }
    }
}
