//! Minute rows and hourly roll-ups in an SQLite file
//! (`observatory.sqlite` in the data directory), purged by age, and the
//! published view of them: only groups of at least k queries.
//!
//! The tables have no column that could hold an address: country code,
//! AS number, door, rcode, EDE class and a count.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::ObservatoryError;
use crate::aggregate::MinuteCounts;
use crate::geo::country_code;

/// The file's name in the data directory.
pub const FILE: &str = "observatory.sqlite";

/// The columns of the count tables, in order; `onedot audit` checks the
/// file holds these (and `failures`' `tld`) and nothing else.
pub const COLUMNS: [&str; 7] = ["t", "country", "asn", "door", "rcode", "ede", "count"];

/// The tables of the file.
pub const TABLES: [&str; 4] = ["minutes", "hours", "overflow", "failures"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS minutes (
  t INTEGER NOT NULL, country TEXT NOT NULL, asn INTEGER NOT NULL, door TEXT NOT NULL,
  rcode INTEGER NOT NULL, ede TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (t, country, asn, door, rcode, ede)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hours (
  t INTEGER NOT NULL, country TEXT NOT NULL, asn INTEGER NOT NULL, door TEXT NOT NULL,
  rcode INTEGER NOT NULL, ede TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (t, country, asn, door, rcode, ede)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS overflow (t INTEGER PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
  t INTEGER NOT NULL, tld TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (t, tld)) WITHOUT ROWID;
";

fn db(path: &Path) -> impl Fn(rusqlite::Error) -> ObservatoryError + '_ {
    move |e| ObservatoryError::Store { path: path.to_path_buf(), reason: e.to_string() }
}

/// The writer's handle on the file.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    doors: Vec<String>,
    minute_retention_s: u64,
    hour_retention_s: u64,
}

impl Store {
    /// Opens (or makes) the file under `data_dir`. `doors` names the door
    /// indexes the aggregator counted with.
    pub fn open(
        data_dir: &Path,
        doors: Vec<String>,
        minute_retention_s: u64,
        hour_retention_s: u64,
    ) -> Result<Store, ObservatoryError> {
        let path = data_dir.join(FILE);
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ObservatoryError::Store { path: path.clone(), reason: e.to_string() })?;
        let conn = Connection::open(&path).map_err(db(&path))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").map_err(db(&path))?;
        conn.execute_batch(SCHEMA).map_err(db(&path))?;
        Ok(Store { conn, path, doors, minute_retention_s, hour_retention_s })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long minute rows are kept, seconds.
    pub fn minute_retention_s(&self) -> u64 {
        self.minute_retention_s
    }

    /// The doors' names, by index.
    pub fn doors(&self) -> &[String] {
        &self.doors
    }

    /// Adds a finished minute to the minute rows and to its hour's roll-up
    /// (adding, so a minute written twice, e.g. across a restart, sums).
    pub fn write(&mut self, m: &MinuteCounts) -> Result<(), ObservatoryError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(db(&path))?;
        {
            let upsert = |table: &str| {
                format!(
                    "INSERT INTO {table} (t, country, asn, door, rcode, ede, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (t, country, asn, door, rcode, ede) DO UPDATE SET count = count + excluded.count"
                )
            };
            let mut minutes = tx.prepare(&upsert("minutes")).map_err(db(&path))?;
            let mut hours = tx.prepare(&upsert("hours")).map_err(db(&path))?;
            let (t, hour) = (m.minute * 60, m.minute / 60 * 3600);
            for (k, n) in &m.cells {
                let door = self.doors.get(usize::from(k.door)).map_or("?", String::as_str);
                let cc = country_code(k.country);
                let (ede, n) = (k.ede.as_str(), *n as i64);
                minutes.execute(params![t as i64, cc, k.asn, door, k.rcode, ede, n]).map_err(db(&path))?;
                hours.execute(params![hour as i64, cc, k.asn, door, k.rcode, ede, n]).map_err(db(&path))?;
            }
            let mut failures = tx
                .prepare(
                    "INSERT INTO failures (t, tld, count) VALUES (?1, ?2, ?3)
                     ON CONFLICT (t, tld) DO UPDATE SET count = count + excluded.count",
                )
                .map_err(db(&path))?;
            for (tld, n) in &m.failures {
                failures.execute(params![t as i64, tld, *n as i64]).map_err(db(&path))?;
            }
            if m.overflow > 0 {
                tx.execute(
                    "INSERT INTO overflow (t, count) VALUES (?1, ?2) ON CONFLICT (t) DO UPDATE SET count = count + excluded.count",
                    params![t as i64, m.overflow as i64],
                )
                .map_err(db(&path))?;
            }
        }
        tx.commit().map_err(db(&path))
    }

    /// Deletes minute rows older than their retention and hour rows older
    /// than theirs, as of `now_s`. Returns the rows deleted.
    pub fn purge(&mut self, now_s: u64) -> Result<usize, ObservatoryError> {
        let path = self.path.clone();
        let minutes = now_s.saturating_sub(self.minute_retention_s);
        let hours = now_s.saturating_sub(self.hour_retention_s);
        let mut n =
            self.conn.execute("DELETE FROM minutes WHERE t < ?1", params![minutes as i64]).map_err(db(&path))?;
        n += self.conn.execute("DELETE FROM overflow WHERE t < ?1", params![minutes as i64]).map_err(db(&path))?;
        n += self.conn.execute("DELETE FROM failures WHERE t < ?1", params![minutes as i64]).map_err(db(&path))?;
        n += self.conn.execute("DELETE FROM hours WHERE t < ?1", params![hours as i64]).map_err(db(&path))?;
        Ok(n)
    }
}

/// Minute rows or hour roll-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `minutes`.
    Minute,
    /// `hours`.
    Hour,
}

/// A dimension a published series may be split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Country code.
    Country,
    /// AS number.
    Asn,
    /// Door name.
    Door,
    /// Response code.
    Rcode,
    /// EDE class.
    Ede,
}

impl Dim {
    /// The dimension named `s` (`country`, `asn`, `door`, `rcode`, `ede`).
    pub fn parse(s: &str) -> Option<Dim> {
        Some(match s {
            "country" => Dim::Country,
            "asn" => Dim::Asn,
            "door" => Dim::Door,
            "rcode" => Dim::Rcode,
            "ede" => Dim::Ede,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Dim::Country => "country",
            Dim::Asn => "asn",
            Dim::Door => "door",
            Dim::Rcode => "rcode",
            Dim::Ede => "ede",
        }
    }
}

/// What to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// From this Unix second (inclusive).
    pub from: u64,
    /// To this Unix second (exclusive).
    pub to: u64,
    /// Only this country.
    pub country: Option<String>,
    /// Only this AS.
    pub asn: Option<u32>,
    /// Split by these (none: one series).
    pub by: Vec<Dim>,
    /// Minutes or hours.
    pub resolution: Resolution,
}

/// One published point: a time bucket, the split's values, and the count
/// (at least k).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The bucket's start, Unix seconds.
    pub t: u64,
    /// Country code, when split by country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// AS number, when split by AS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Door, when split by door.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    /// Response code, when split by rcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
    /// EDE class, when split by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ede: Option<String>,
    /// Queries.
    pub count: u64,
}

/// Opens the file read-only for the published view.
pub fn open_reader(data_dir: &Path) -> Result<Connection, ObservatoryError> {
    let path = data_dir.join(FILE);
    Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db(&path))
}

/// The published points for `q`: groups with fewer than `k` queries are
/// left out, so no small population is ever shown.
pub fn publish(conn: &Connection, q: &Query, k: u64) -> Result<Vec<Point>, ObservatoryError> {
    let table = match q.resolution {
        Resolution::Minute => "minutes",
        Resolution::Hour => "hours",
    };
    let cols: Vec<&str> = q.by.iter().map(|d| d.column()).collect();
    let group = std::iter::once("t").chain(cols.iter().copied()).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {group}, SUM(count) FROM {table} WHERE t >= ?1 AND t < ?2
         AND (?3 IS NULL OR country = ?3) AND (?4 IS NULL OR asn = ?4)
         GROUP BY {group} HAVING SUM(count) >= ?5 ORDER BY {group}"
    );
    let path = conn.path().map(PathBuf::from).unwrap_or_default();
    let mut st = conn.prepare(&sql).map_err(db(&path))?;
    let rows = st
        .query_map(
            params![q.from.min(i64::MAX as u64) as i64, q.to.min(i64::MAX as u64) as i64, q.country, q.asn, k as i64],
            |r| {
                let mut p = Point {
                    t: r.get::<_, i64>(0)? as u64,
                    country: None,
                    asn: None,
                    door: None,
                    rcode: None,
                    ede: None,
                    count: 0,
                };
                for (i, d) in q.by.iter().enumerate() {
                    let i = i + 1;
                    match d {
                        Dim::Country => p.country = Some(r.get(i)?),
                        Dim::Asn => p.asn = Some(r.get(i)?),
                        Dim::Door => p.door = Some(r.get(i)?),
                        Dim::Rcode => p.rcode = Some(r.get(i)?),
                        Dim::Ede => p.ede = Some(r.get(i)?),
                    }
                }
                p.count = r.get::<_, i64>(q.by.len() + 1)? as u64;
                Ok(p)
            },
        )
        .map_err(db(&path))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db(&path))
}

/// The points as CSV (a header, then one line per point, with the split's
/// columns).
pub fn csv(points: &[Point], by: &[Dim]) -> String {
    use std::fmt::Write;
    let mut out = String::from("t");
    for d in by {
        out.push(',');
        out.push_str(d.column());
    }
    out.push_str(",count\n");
    for p in points {
        let _ = write!(out, "{}", p.t);
        for d in by {
            let _ = match d {
                Dim::Country => write!(out, ",{}", p.country.as_deref().unwrap_or("")),
                Dim::Asn => write!(out, ",{}", p.asn.unwrap_or(0)),
                Dim::Door => write!(out, ",{}", p.door.as_deref().unwrap_or("")),
                Dim::Rcode => write!(out, ",{}", p.rcode.unwrap_or(0)),
                Dim::Ede => write!(out, ",{}", p.ede.as_deref().unwrap_or("")),
            };
        }
        let _ = writeln!(out, ",{}", p.count);
    }
    out
}

/// What `onedot audit` checks of the file: its tables hold only the
/// declared columns, and the oldest minute row is within its retention
/// (plus `slack_s`). Returns `(ok, what was found)` per check.
pub fn audit(data_dir: &Path, minute_retention_s: u64, now_s: u64, slack_s: u64) -> Vec<(bool, &'static str, String)> {
    let path = data_dir.join(FILE);
    if !path.exists() {
        return vec![(true, "observatory holds only aggregates", "no observatory file".into())];
    }
    let conn = match open_reader(data_dir) {
        Ok(c) => c,
        Err(e) => return vec![(false, "observatory holds only aggregates", e.to_string())],
    };
    let mut out = Vec::new();
    let mut extra = Vec::new();
    for table in TABLES {
        let cols: rusqlite::Result<Vec<String>> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
        match cols {
            Ok(cols) => extra.extend(
                cols.into_iter()
                    .filter(|c| !(COLUMNS.contains(&c.as_str()) || (table == "failures" && c == "tld")))
                    .map(|c| format!("{table}.{c}")),
            ),
            Err(e) => extra.push(format!("{table}: {e}")),
        }
    }
    let tables: rusqlite::Result<Vec<String>> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect());
    extra.extend(tables.unwrap_or_default().into_iter().filter(|t| !TABLES.contains(&t.as_str())));
    out.push(if extra.is_empty() {
        (true, "observatory holds only aggregates", format!("columns {}", COLUMNS.join(", ")))
    } else {
        (false, "observatory holds only aggregates", format!("unexpected: {}", extra.join(", ")))
    });
    let oldest: rusqlite::Result<Option<u64>> = conn
        .query_row("SELECT MIN(t) FROM minutes", [], |r| r.get::<_, Option<i64>>(0))
        .optional()
        .map(|t| t.flatten().map(|t| t as u64));
    out.push(match oldest {
        Ok(Some(t)) => {
            let age = now_s.saturating_sub(t);
            (
                age <= minute_retention_s + slack_s,
                "observatory minute rows within retention",
                format!("oldest {age} s old, retention {minute_retention_s} s"),
            )
        }
        Ok(None) => (true, "observatory minute rows within retention", "empty".into()),
        Err(e) => (false, "observatory minute rows within retention", e.to_string()),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{CellKey, EdeClass};
    use crate::geo::country;

    fn cell(cc: &str, asn: u32, door: u8, n: u64) -> (CellKey, u64) {
        (CellKey { country: country(cc), asn, door, rcode: 0, ede: EdeClass::None }, n)
    }

    #[test]
    fn minutes_roll_up_into_hours_and_small_groups_stay_unpublished() {
        let dir = std::env::temp_dir().join(format!("onedot-obs-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Store::open(&dir, vec!["udp".into(), "doh".into()], 3600, 86_400).expect("open");
        s.write(&MinuteCounts {
            minute: 100,
            cells: vec![cell("DE", 1, 0, 30), cell("FR", 2, 1, 3)],
            overflow: 0,
            failures: vec![],
        })
        .expect("write");
        s.write(&MinuteCounts {
            minute: 101,
            cells: vec![cell("DE", 1, 0, 25), cell("FR", 2, 1, 4)],
            overflow: 2,
            failures: vec![("test".into(), 3)],
        })
        .expect("write");
        // The same minute again (a restart): it adds.
        s.write(&MinuteCounts { minute: 101, cells: vec![cell("DE", 1, 1, 5)], overflow: 0, failures: vec![] })
            .expect("write");
        let conn = open_reader(&dir).expect("reader");
        let q =
            |by: Vec<Dim>, resolution| Query { from: 0, to: u64::MAX / 2, country: None, asn: None, by, resolution };
        let by_country = publish(&conn, &q(vec![Dim::Country], Resolution::Minute), 20).expect("publish");
        assert_eq!(
            by_country.iter().map(|p| (p.t, p.country.clone().unwrap_or_default(), p.count)).collect::<Vec<_>>(),
            vec![(6000, "DE".to_string(), 30), (6060, "DE".to_string(), 30)],
            "FR (3, 4 a minute) is below k = 20"
        );
        let hours = publish(&conn, &q(vec![Dim::Country], Resolution::Hour), 5).expect("publish");
        assert_eq!(
            hours.iter().map(|p| (p.t, p.country.clone().unwrap_or_default(), p.count)).collect::<Vec<_>>(),
            vec![(3600, "DE".to_string(), 60), (3600, "FR".to_string(), 7)]
        );
        let doors = publish(&conn, &q(vec![Dim::Door], Resolution::Hour), 1).expect("publish");
        assert_eq!(csv(&doors, &[Dim::Door]), "t,door,count\n3600,doh,12\n3600,udp,55\n");
        let findings = audit(&dir, 3600, 6100, 0);
        assert!(findings.iter().all(|f| f.0), "{findings:?}");
        assert!(!audit(&dir, 3600, 6000 + 7200, 0)[1].0, "rows past retention must be found");
        assert!(s.purge(6000 + 3600 + 61).expect("purge") >= 2);
        assert!(audit(&dir, 3600, 6000 + 7200, 0)[1].0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
