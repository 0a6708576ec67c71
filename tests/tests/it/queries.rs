//! Queries by each index, by time, with cursors.

use std::time::Duration;

use onoal_engine::{Filter, Query, ReadError};

use crate::util::{create, entry, oid};

#[test]
fn query_by_each_filter_with_cursor_paging() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    let mut batch = Vec::new();
    for i in 0..90u32 {
        let mut e = entry(
            ["orders", "payments", "audit"][(i % 3) as usize],
            if i % 2 == 0 { "even" } else { "odd" },
            format!("{i}"),
        );
        if i % 5 == 0 {
            e = e.with_subject(oid("oid:onoal:customer:7"));
        }
        if i % 9 == 0 {
            e = e.with_issuer(oid("oid:onoal:bank"));
        }
        batch.push(e);
    }
    l.append_batch(batch).unwrap();
    let seqs = |q: &Query| -> Vec<u64> {
        l.query(q).unwrap().entries.iter().map(|e| e.entry.seq).collect()
    };

    let by_stream = seqs(&Query {
        filter: Filter { stream: Some("payments".into()), ..Default::default() },
        limit: Some(1000),
        ..Default::default()
    });
    assert_eq!(by_stream, (0..90).filter(|i| i % 3 == 1).collect::<Vec<_>>());
    let by_type = seqs(&Query {
        filter: Filter { entry_type: Some("odd".into()), ..Default::default() },
        limit: Some(1000),
        ..Default::default()
    });
    assert_eq!(by_type.len(), 45);
    let by_subject = seqs(&Query {
        filter: Filter { subject: Some("oid:onoal:customer:7".into()), ..Default::default() },
        limit: Some(1000),
        ..Default::default()
    });
    assert_eq!(by_subject, (0..90).filter(|i| i % 5 == 0).collect::<Vec<_>>());
    let both = seqs(&Query {
        filter: Filter {
            subject: Some("oid:onoal:customer:7".into()),
            issuer: Some("oid:onoal:bank".into()),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(both, vec![0, 45]);
    let combined = seqs(&Query {
        filter: Filter {
            stream: Some("orders".into()),
            entry_type: Some("even".into()),
            ..Default::default()
        },
        limit: Some(1000),
        ..Default::default()
    });
    assert_eq!(combined, (0..90).filter(|i| i % 6 == 0).collect::<Vec<_>>());

    // Paging: 30 payments in pages of 7.
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = l
            .query(&Query {
                filter: Filter { stream: Some("payments".into()), ..Default::default() },
                limit: Some(7),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .unwrap();
        assert!(page.entries.len() <= 7);
        all.extend(page.entries.iter().map(|e| e.entry.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(all, by_stream);
    assert!(matches!(
        l.query(&Query { cursor: Some("nope".into()), ..Default::default() }),
        Err(ReadError::BadCursor(_))
    ));
    assert!(
        seqs(&Query {
            filter: Filter { stream: Some("nothing".into()), ..Default::default() },
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn query_by_time_window() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    l.append(entry("s", "t", "early")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mid = l.append(entry("s", "t", "middle")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    l.append(entry("s", "t", "late")).unwrap();
    let ts = l.entry(mid.seq).unwrap().entry.timestamp_ms;
    let page = l
        .query(&Query {
            filter: Filter { since_ms: Some(ts), until_ms: Some(ts), ..Default::default() },
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.entries.iter().map(|e| e.entry.seq).collect::<Vec<_>>(), vec![mid.seq]);
    let after = l
        .query(&Query {
            filter: Filter { since_ms: Some(ts + 1), ..Default::default() },
            ..Default::default()
        })
        .unwrap();
    assert_eq!(after.entries.len(), 1);
    assert_eq!(after.entries[0].entry.content.payload, b"late");
}

#[test]
fn paging_across_many_groups_returns_each_match_once() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    // Ten separate groups (each append_batch waits), streams alternating.
    for g in 0..10u32 {
        let batch = (0..10u32)
            .map(|i| {
                entry(if (g * 10 + i) % 2 == 0 { "even" } else { "odd" }, "t", format!("{g}-{i}"))
            })
            .collect();
        l.append_batch(batch).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = l
            .query(&Query {
                filter: Filter { stream: Some("odd".into()), ..Default::default() },
                limit: Some(7),
                cursor: cursor.clone(),
                ..Default::default()
            })
            .unwrap();
        seen.extend(page.entries.iter().map(|e| e.entry.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..100).filter(|s| s % 2 == 1).collect::<Vec<_>>());
}
