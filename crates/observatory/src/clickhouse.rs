//! Fleet-wide minute rows in ClickHouse over its HTTP interface: every
//! node adds its finished minutes, tagged with its name, to one table, and
//! the dashboard's fleet view sums them there.
//!
//! Plain HTTP/1.1 on a blocking socket from the observatory's writer
//! thread (a few lines, no client library): `POST /?query=...` with rows
//! in TabSeparated, the `user` and `password` parameters when set. Times
//! are Unix seconds (`UInt32`), which every ClickHouse release reads the
//! same way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::ObservatoryError;
use crate::aggregate::MinuteCounts;
use crate::geo::country_code;

/// A ClickHouse server and the table the fleet writes to.
#[derive(Debug, Clone)]
pub struct ClickHouse {
    addr: SocketAddr,
    host: String,
    database: String,
    node: String,
    user: Option<String>,
    password: Option<String>,
    timeout: Duration,
}

fn err(why: impl std::fmt::Display) -> ObservatoryError {
    ObservatoryError::ClickHouse(why.to_string())
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name ClickHouse takes unquoted (database names).
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, ObservatoryError> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(|| err("bad chunked body"))?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(err)?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(err)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or_else(|| err("truncated chunk"))?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or_else(|| err("truncated chunk"))?;
    }
}

impl ClickHouse {
    /// `url` is `http://host:port` (no TLS: a loopback or private link to
    /// the fleet's ClickHouse); `node` names this node's rows.
    pub fn new(
        url: &str,
        database: &str,
        node: &str,
        user: Option<String>,
        password: Option<String>,
    ) -> Result<ClickHouse, ObservatoryError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| err(format!("{url}: only http:// URLs")))?;
        let host = rest.trim_end_matches('/').to_string();
        if host.contains('/') {
            return Err(err(format!("{url}: give the server only, http://host:port")));
        }
        let addr = host
            .to_socket_addrs()
            .map_err(|e| err(format!("{url}: {e}")))?
            .next()
            .ok_or_else(|| err(format!("{url}: no address")))?;
        if !plain_name(database) {
            return Err(err(format!("database {database:?}: letters, digits and _ only")));
        }
        if node.is_empty() || node.len() > 64 || node.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
            return Err(err(format!("node {node:?}: 1 to 64 printable characters")));
        }
        Ok(ClickHouse {
            addr,
            host,
            database: database.to_string(),
            node: node.to_string(),
            user,
            password,
            timeout: Duration::from_secs(5),
        })
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs one statement: `query` in the URL, `body` as data (or the
    /// statement itself when `query` is `None`). Returns the response body.
    pub fn post(&self, query: Option<&str>, body: &[u8]) -> Result<String, ObservatoryError> {
        let mut path = String::from("/?");
        if let Some(q) = query {
            path.push_str(&format!("query={}&", encode(q)));
        }
        if let Some(u) = &self.user {
            path.push_str(&format!("user={}&", encode(u)));
        }
        if let Some(p) = &self.password {
            path.push_str(&format!("password={}&", encode(p)));
        }
        let mut s =
            TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|e| err(format!("{}: {e}", self.addr)))?;
        s.set_read_timeout(Some(self.timeout)).map_err(err)?;
        s.set_write_timeout(Some(self.timeout)).map_err(err)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).map_err(err)?;
        let mut response = Vec::new();
        s.take(64 << 20).read_to_end(&mut response).map_err(err)?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("no HTTP response"))?;
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let mut body = response[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body)?;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let status = head.split_whitespace().nth(1).unwrap_or("");
        if status != "200" {
            return Err(err(format!("HTTP {status}: {}", text.trim())));
        }
        Ok(text)
    }

    /// Makes the database and the table if they are missing.
    pub fn ensure_schema(&self) -> Result<(), ObservatoryError> {
        let db = &self.database;
        self.post(None, format!("CREATE DATABASE IF NOT EXISTS {db}").as_bytes())?;
        self.post(
            None,
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.minutes (t UInt32, node String, country String, asn UInt32, \
                 door String, rcode UInt8, ede String, count UInt64) \
                 ENGINE = MergeTree() PARTITION BY intDiv(t, 86400) ORDER BY (t, country, asn, node)"
            )
            .as_bytes(),
        )?;
        Ok(())
    }

    /// Deletes this node's rows older than `before` (Unix seconds): the
    /// fleet's copy keeps the same retention as the node's minute rows.
    pub fn purge(&self, before: u64) -> Result<(), ObservatoryError> {
        let node = self.node.replace('\'', "\\'");
        self.post(
            None,
            format!("ALTER TABLE {}.minutes DELETE WHERE node = '{node}' AND t < {before}", self.database).as_bytes(),
        )?;
        Ok(())
    }

    /// Adds a finished minute's cells, as this node's.
    pub fn insert(&self, m: &MinuteCounts, doors: &[String]) -> Result<(), ObservatoryError> {
        if m.cells.is_empty() {
            return Ok(());
        }
        let mut rows = String::new();
        let t = m.minute * 60;
        for (k, n) in &m.cells {
            let door = doors.get(usize::from(k.door)).map_or("?", String::as_str);
            rows.push_str(&format!(
                "{t}\t{}\t{}\t{}\t{door}\t{}\t{}\t{n}\n",
                self.node,
                country_code(k.country),
                k.asn,
                k.rcode,
                k.ede.as_str()
            ));
        }
        self.post(Some(&format!("INSERT INTO {}.minutes FORMAT TabSeparated", self.database)), rows.as_bytes())?;
        Ok(())
    }

    /// The fleet's totals for `[from, to)` by country: (country, queries,
    /// nodes that saw it), most queries first; groups below `k` left out.
    pub fn fleet_totals(&self, from: u64, to: u64, k: u64) -> Result<Vec<(String, u64, u64)>, ObservatoryError> {
        let sql = format!(
            "SELECT country, sum(count) AS n, uniqExact(node) FROM {}.minutes WHERE t >= {from} AND t < {to} \
             AND country != '--' GROUP BY country HAVING n >= {k} ORDER BY n DESC, country FORMAT TabSeparated",
            self.database
        );
        let text = self.post(None, sql.as_bytes())?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| match l.split('\t').collect::<Vec<_>>().as_slice() {
                [c, n, nodes] => Ok(((*c).to_string(), n.parse().map_err(err)?, nodes.parse().map_err(err)?)),
                _ => Err(err(format!("unexpected row {l:?}"))),
            })
            .collect()
    }

    /// The fleet's counts for `[from, to)` (Unix seconds) by minute and
    /// country, summed over nodes; groups below `k` left out. Returns
    /// (t, country, count, nodes).
    pub fn fleet_by_country(
        &self,
        from: u64,
        to: u64,
        k: u64,
    ) -> Result<Vec<(u64, String, u64, u64)>, ObservatoryError> {
        let sql = format!(
            "SELECT t, country, sum(count) AS n, uniqExact(node) FROM {}.minutes WHERE t >= {from} AND t < {to} \
             GROUP BY t, country HAVING n >= {k} ORDER BY t, country FORMAT TabSeparated",
            self.database
        );
        let text = self.post(None, sql.as_bytes())?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                match f.as_slice() {
                    [t, c, n, nodes] => Ok((
                        t.parse().map_err(err)?,
                        (*c).to_string(),
                        n.parse().map_err(err)?,
                        nodes.parse().map_err(err)?,
                    )),
                    _ => Err(err(format!("unexpected row {l:?}"))),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_names_and_chunks() {
        assert!(ClickHouse::new("https://x:1", "db", "n", None, None).is_err());
        assert!(ClickHouse::new("http://127.0.0.1:8123", "bad-name", "n", None, None).is_err());
        assert!(ClickHouse::new("http://127.0.0.1:8123", "onedot", "ams\t1", None, None).is_err());
        assert!(ClickHouse::new("http://127.0.0.1:8123/", "onedot", "ams1", None, None).is_ok());
        assert_eq!(encode("INSERT INTO a.b FORMAT TSV"), "INSERT%20INTO%20a.b%20FORMAT%20TSV");
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").expect("chunks"), b"abcde");
        assert!(dechunk(b"5\r\nab").is_err());
    }
}
