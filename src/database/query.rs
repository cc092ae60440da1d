//! `eddy query`: an SQL query on the tables a database sink wrote, its rows
//! printed as CSV with a header (empty fields for NULL), so that the answer
//! can go straight to pandas, a spreadsheet or another `eddy` command.

use anyhow::{anyhow, Context};
use std::io::Write;
use std::path::Path;

/// Runs `sql` on an SQLite file (opened read-only: a query never changes it).
pub fn sqlite(path: &Path, sql: &str, out: impl Write) -> anyhow::Result<()> {
    use rusqlite::types::ValueRef;
    if !path.exists() {
        anyhow::bail!("no SQLite database at {}", path.display());
    }
    let connection =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", path.display()))?;
    let mut statement = connection.prepare(sql).map_err(|e| anyhow!("query: {e}"))?;
    let mut csv = csv::Writer::from_writer(out);
    let names: Vec<String> = statement
        .column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    csv.write_record(&names)?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let mut fields = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            fields.push(match row.get_ref(i)? {
                ValueRef::Null => String::new(),
                ValueRef::Integer(v) => v.to_string(),
                // Shortest text that reads back as the same float.
                ValueRef::Real(v) => v.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => format!("<{} bytes>", b.len()),
            });
        }
        csv.write_record(&fields)?;
    }
    csv.flush()?;
    Ok(())
}

/// Runs `sql` on PostgreSQL (the server's text form of every value).
pub fn postgres(url: &str, sql: &str, out: impl Write) -> anyhow::Result<()> {
    use postgres::SimpleQueryMessage;
    let server = super::pg_tls::PgTarget::parse(url)
        .map_err(|e| anyhow!("bad PostgreSQL URL {}: {e:#}", super::without_password(url)))?;
    let mut client = server.connect().map_err(|e| {
        anyhow!(
            "cannot connect to PostgreSQL: {}",
            super::pg_tls::explain(&e)
        )
    })?;
    let messages = client
        .simple_query(sql)
        .map_err(|e| anyhow!("query: {e}"))?;
    let mut csv = csv::Writer::from_writer(out);
    let mut header = false;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) if !header => {
                csv.write_record(columns.iter().map(|c| c.name()))?;
                header = true;
            }
            SimpleQueryMessage::Row(row) => {
                if !header {
                    csv.write_record(row.columns().iter().map(|c| c.name()))?;
                    header = true;
                }
                csv.write_record((0..row.len()).map(|i| row.get(i).unwrap_or("")))?;
            }
            _ => {}
        }
    }
    csv.flush()?;
    Ok(())
}
