//! Numbers and IP addresses as text, for both encoders: a FIND answer writes an address, a
//! port and a priority for every listed peer, and `fmt` costs several times what these do.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Appends the decimal form of `value`.
pub(crate) fn push_u64(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// One to three decimal digits, pushed one by one: cheaper than formatting into a buffer
/// and copying that. Inlined into the four calls of each address (the compiler keeps it a
/// call otherwise, which costs as much as the digits).
#[inline(always)]
fn push_octet(out: &mut String, octet: u8) {
    if octet >= 100 {
        out.push(char::from(b'0' + octet / 100));
    }
    if octet >= 10 {
        out.push(char::from(b'0' + octet / 10 % 10));
    }
    out.push(char::from(b'0' + octet % 10));
}

/// An IPv4 address in dotted decimal, written octet by octet; IPv6 in RFC 5952 form through
/// std's `Display`.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            push_octet(out, a);
            out.push('.');
            push_octet(out, b);
            out.push('.');
            push_octet(out, c);
            out.push('.');
            push_octet(out, d);
        }
        // Writing into a String cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_std_displays_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.99.100.9",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for value in [0, 7, 10, 65_535, 4_294_967_295, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string());
        }
    }
}
