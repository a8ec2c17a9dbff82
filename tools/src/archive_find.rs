//! `silt archive find` and `silt archive index`: records by key straight from the bucket,
//! through the key indexes archived beside segments (no broker needed).

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use silt_archiver::keys::{self, Found, KeyQuery};
use silt_archiver::remote::RemoteMetrics;
use silt_archiver::{Archive, ReaderConfig, RemoteReader, TopicCatalog};

use crate::archive::{topics, when};

/// How keys and values are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Shown {
    /// UTF-8 text (bytes that are not shown escaped).
    Text,
    /// One JSON object per line; key, value and headers as text when UTF-8, else base64
    /// under `*_base64`.
    Json,
    /// Hexadecimal.
    Hex,
}

/// What `silt archive find` was asked.
#[derive(Debug, clap::Args)]
pub(crate) struct FindArgs {
    /// The topic.
    topic: String,
    /// The key, as text.
    #[arg(long, required_unless_present = "key_hex")]
    key: Option<String>,
    /// The key, in hexadecimal (for binary keys).
    #[arg(long, conflicts_with = "key")]
    key_hex: Option<String>,
    /// Only records at or after this time: milliseconds since the epoch, or
    /// YYYY-MM-DD[THH:MM:SS[Z]] in UTC.
    #[arg(long)]
    from: Option<String>,
    /// Only records before this time (same forms as --from).
    #[arg(long)]
    to: Option<String>,
    /// Only this partition (default: where the clients' default partitioners put the key).
    #[arg(long, conflicts_with = "all_partitions")]
    partition: Option<i32>,
    /// Every partition (for producers that chose partitions themselves).
    #[arg(long)]
    all_partitions: bool,
    /// How keys, values and headers are printed.
    #[arg(long, value_enum, default_value = "text")]
    format: Shown,
}

/// Runs `silt archive find`.
pub(crate) async fn find(archive: &Archive, args: FindArgs) -> Result<()> {
    let key = match (&args.key, &args.key_hex) {
        (Some(text), _) => Bytes::from(text.clone().into_bytes()),
        (None, Some(hex)) => Bytes::from(from_hex(hex).context("--key-hex")?),
        (None, None) => bail!("give the key with --key or --key-hex"),
    };
    let query = KeyQuery {
        key: key.clone(),
        from_ms: args.from.as_deref().map(parse_time).transpose()?,
        to_ms: args.to.as_deref().map(parse_time).transpose()?,
    };
    let topic = topics(archive, Some(&args.topic))
        .await?
        .into_iter()
        .max_by_key(|t| t.updated_ms)
        .context("topic not in the archive")?;
    let partitions = chosen_partitions(&topic, &key, &args)?;
    let cache = tempfile::tempdir().context("a scratch directory for the chunk cache")?;
    let reader = RemoteReader::new(
        archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().to_path_buf(),
            cache_bytes: 256 << 20,
            prefetch_chunks: 0,
            ..ReaderConfig::default()
        },
    )?;
    let metrics = archive.remote().metrics().clone();
    let gets_before = RemoteMetrics::get(&metrics.gets);
    let mut found_total = 0u64;
    for partition in &partitions {
        let manifest = reader.manifest(topic.partition_id(*partition));
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} segments ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{}/{partition}", topic.name));
        let format = args.format;
        let stats = keys::find(
            &reader,
            &manifest,
            &query,
            &mut |found| {
                bar.suspend(|| println!("{}", render(&found, format)));
                std::ops::ControlFlow::Continue(())
            },
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        )
        .await
        .with_context(|| format!("searching {}/{partition}", topic.name))?;
        bar.finish_and_clear();
        found_total += stats.found;
        eprintln!(
            "{}/{partition}: {} found; {} segments, {} with a key index, {} in key filters, {} indexes read, {} without an index read whole",
            topic.name,
            stats.found,
            stats.segments,
            stats.indexed,
            stats.filtered,
            stats.indexes_read,
            stats.unindexed
        );
        if stats.unindexed > 0 {
            eprintln!(
                "  {} segments have no key index: run `silt archive index {}` to index them",
                stats.unindexed, topic.name
            );
        }
    }
    eprintln!(
        "{found_total} records found; {} GETs",
        RemoteMetrics::get(&metrics.gets) - gets_before
    );
    if found_total == 0 && args.partition.is_none() && !args.all_partitions {
        eprintln!(
            "  only partitions {partitions:?} were searched (where the clients' default partitioners put this key); a producer that chose partitions itself may have put it elsewhere: --all-partitions searches them all"
        );
    }
    Ok(())
}

/// The partitions to search, saying why on stderr.
fn chosen_partitions(topic: &TopicCatalog, key: &[u8], args: &FindArgs) -> Result<Vec<i32>> {
    if let Some(p) = args.partition {
        if !(0..topic.partitions).contains(&p) {
            bail!(
                "topic '{}' has partitions 0 to {}, not {p}",
                topic.name,
                topic.partitions - 1
            );
        }
        return Ok(vec![p]);
    }
    if args.all_partitions {
        return Ok((0..topic.partitions).collect());
    }
    let chosen = keys::default_partitions(key, topic.partitions);
    for (p, why) in &chosen {
        eprintln!("partition {p}: {why}");
    }
    Ok(chosen.into_iter().map(|(p, _)| p).collect())
}

/// Runs `silt archive index`: key indexes for archived segments that have none, then key
/// filters over every indexed segment.
pub(crate) async fn index(archive: &Archive, topic: &str, only: Option<i32>) -> Result<()> {
    let topic = topics(archive, Some(topic))
        .await?
        .into_iter()
        .max_by_key(|t| t.updated_ms)
        .context("topic not in the archive")?;
    let cache = tempfile::tempdir().context("a scratch directory for the chunk cache")?;
    let reader: Arc<RemoteReader> = RemoteReader::new(
        archive.clone(),
        ReaderConfig {
            cache_dir: cache.path().to_path_buf(),
            cache_bytes: 256 << 20,
            ..ReaderConfig::default()
        },
    )?;
    for partition in 0..topic.partitions {
        if only.is_some_and(|p| p != partition) {
            continue;
        }
        let manifest = reader.manifest(topic.partition_id(partition));
        let root = manifest.latest_root().await?;
        let present = keys::list(&manifest).await?;
        let missing: Vec<_> = keys::segments(&manifest, &root)
            .await?
            .into_iter()
            .filter(|e| {
                !present.indexes.contains_key(&(
                    e.meta.base_offset,
                    e.meta.last_offset,
                    e.object_id,
                ))
            })
            .collect();
        let bar = ProgressBar::new(missing.iter().map(|e| e.meta.size_bytes).sum()).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{}/{partition}", topic.name));
        let mut records = 0;
        for entry in &missing {
            records += keys::index_segment(&reader, &manifest, &root, entry).await?;
            bar.inc(entry.meta.size_bytes);
        }
        bar.finish_and_clear();
        let filters = keys::refresh_filters(&manifest, &root, true).await?;
        println!(
            "{}/{partition}: {} segments indexed ({records} keyed records), {filters} key filters written",
            topic.name,
            missing.len()
        );
    }
    Ok(())
}

/// One found record as a line.
fn render(found: &Found, format: Shown) -> String {
    match format {
        Shown::Json => found.to_json().to_string(),
        Shown::Text | Shown::Hex => {
            let show = |b: &Bytes| match format {
                Shown::Hex => hex(b),
                _ => String::from_utf8_lossy(b).escape_debug().to_string(),
            };
            let headers: Vec<String> = found
                .headers
                .iter()
                .map(|(k, v)| format!("{}={}", show(k), v.as_ref().map_or("null".into(), show)))
                .collect();
            format!(
                "partition={} offset={} timestamp={} ({}) key={} value={} headers=[{}]",
                found.partition,
                found.offset,
                found.timestamp,
                when(found.timestamp),
                show(&found.key),
                found.value.as_ref().map_or("null".into(), show),
                headers.join(",")
            )
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        bail!("{text:?} has an odd number of hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .with_context(|| format!("{:?} is not hexadecimal", &text[i..i + 2]))
        })
        .collect()
}

/// Milliseconds since the epoch, from a number of them or a UTC date and time.
pub(crate) fn parse_time(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad =
        || format!("{text:?} is neither milliseconds since the epoch nor YYYY-MM-DD[THH:MM:SS[Z]]");
    let text = text.trim_end_matches('Z');
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00"));
    let numbers =
        |s: &str, sep: char| -> Option<Vec<i64>> { s.split(sep).map(|n| n.parse().ok()).collect() };
    let d = numbers(date, '-').with_context(bad)?;
    let t = numbers(time, ':').with_context(bad)?;
    let (&[year, month, day], &[hour, minute, second]) = (d.as_slice(), t.as_slice()) else {
        bail!(bad());
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        bail!(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm, the inverse of `when`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_and_print_back() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        let ms = parse_time("2026-12-01T14:29:19Z").unwrap();
        assert_eq!(when(ms), "2026-12-01T14:29:19Z");
        assert_eq!(
            parse_time("2024-02-29").unwrap(),
            parse_time("2024-02-29T00:00:00").unwrap()
        );
        assert!(parse_time("2024-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn binary_keys_round_trip_through_hex() {
        assert_eq!(from_hex("00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }
}
