//! The real binary on a free loopback port: readiness line, then the fixed body for any
//! request, several on one keep-alive connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn answers_every_request_with_the_fixed_body() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppsp-bench-hello"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ppsp-bench-hello");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("readiness line");
    let authority = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected readiness line {line:?}"))
        .to_owned();
    assert!(authority.starts_with("127.0.0.1:"), "{authority}");

    let mut stream = TcpStream::connect(&authority).expect("connect");
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {authority}\r\n\r\n\
         POST /announce HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 3\r\n\r\nabc\
         GET /x HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("send requests");
    let mut answers = String::new();
    stream.read_to_string(&mut answers).expect("read answers");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 3, "{answers}");
    assert_eq!(answers.matches("\r\n\r\nhello\n").count(), 3, "{answers}");
}
