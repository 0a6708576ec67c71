use super::*;

fn out(i: u8) -> Outgoing {
    Outgoing {
        message_id: [i; 16],
        message_type: "peer_announce".into(),
        from_ledger_id: LedgerId::from_bytes([1; 16]),
        to_ledger_id: Some(LedgerId::from_bytes([2; 16])),
        to_key: [2; 32],
        to_addr: "127.0.0.1:7400".parse().unwrap(),
        message: vec![i; 10],
        ttl: 1,
    }
}

fn writes(o: &mut Outbox) -> Vec<Write> {
    std::iter::from_fn(|| o.poll_write()).collect()
}

#[test]
fn a_message_is_sent_retried_with_doubling_backoff_and_delivered() {
    let mut o = Outbox::new(RetryPolicy::default());
    o.enqueue(out(1), 1_000).unwrap();
    assert_eq!(o.poll_timeout(), Some(1_000));
    let a = o.due(1_000);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].message, vec![1; 10]);
    assert!(o.due(1_000).is_empty(), "in flight: not sent twice");
    assert_eq!(o.get(&[1; 16]).unwrap().status, Delivery::Sent);
    // No answer: tried again after 1 s, then 2 s.
    o.answered(&[1; 16], Outcome::NoAnswer("no answer within 3 s".into()), 4_000);
    let row = o.get(&[1; 16]).unwrap();
    assert_eq!((row.status, row.retry_count, row.next_attempt_ms), (Delivery::Pending, 1, 5_000));
    assert!(o.due(4_999).is_empty());
    assert_eq!(o.due(5_000).len(), 1);
    o.answered(&[1; 16], Outcome::NoAnswer("no answer".into()), 5_100);
    assert_eq!(o.get(&[1; 16]).unwrap().next_attempt_ms, 7_100);
    assert_eq!(o.due(7_100).len(), 1);
    o.answered(&[1; 16], Outcome::Delivered, 7_200);
    let row = o.get(&[1; 16]).unwrap().clone();
    assert_eq!(
        (row.status, row.delivered_ms, row.retry_count),
        (Delivery::Delivered, Some(7_200), 2)
    );
    assert_eq!(o.poll_timeout(), None);
    // Every change was handed out for the disk, the last one the delivered row.
    let w = writes(&mut o);
    assert_eq!(w.len(), 7, "{w:?}");
    assert_eq!(w.last(), Some(&Write::Put(Box::new(row))));
}

#[test]
fn out_of_attempts_refused_and_expired_messages_fail_with_the_reason() {
    let policy = RetryPolicy { max_attempts: 2, ..RetryPolicy::default() };
    let mut o = Outbox::new(policy);
    o.enqueue(out(1), 0).unwrap();
    o.enqueue(out(2), 0).unwrap();
    assert_eq!(o.due(0).len(), 2);
    o.answered(&[1; 16], Outcome::NoAnswer("no answer".into()), 10);
    o.answered(&[2; 16], Outcome::Refused("bad_signature".into()), 10);
    let refused = o.get(&[2; 16]).unwrap();
    assert_eq!(refused.status, Delivery::Failed);
    assert_eq!(refused.last_error.as_deref(), Some("bad_signature"));
    assert_eq!(o.due(1_010).len(), 1);
    o.answered(&[1; 16], Outcome::NoAnswer("no answer".into()), 1_020);
    let row = o.get(&[1; 16]).unwrap();
    assert_eq!(row.status, Delivery::Failed);
    assert_eq!(row.last_error.as_deref(), Some("no answer (2 attempts)"));
    // A message whose next attempt would fall past its expiry fails then.
    let mut o = Outbox::new(RetryPolicy { lifetime: Duration::from_secs(2), ..policy });
    o.enqueue(out(3), 0).unwrap();
    o.due(0);
    o.answered(&[3; 16], Outcome::NoAnswer("no answer".into()), 1_500);
    assert_eq!(o.get(&[3; 16]).unwrap().status, Delivery::Failed);
    // A pending one past its expiry fails as expired.
    let mut o = Outbox::new(RetryPolicy { lifetime: Duration::from_secs(10), ..policy });
    o.enqueue(out(4), 0).unwrap();
    o.expire(10_000);
    let row = o.get(&[4; 16]).unwrap();
    assert_eq!((row.status, row.last_error.as_deref()), (Delivery::Failed, Some("expired")));
    assert!(o.due(10_000).is_empty());
}

#[test]
fn an_answer_for_a_message_not_in_flight_changes_nothing() {
    let mut o = Outbox::new(RetryPolicy::default());
    o.enqueue(out(1), 0).unwrap();
    o.answered(&[1; 16], Outcome::Delivered, 5);
    assert_eq!(o.get(&[1; 16]).unwrap().status, Delivery::Pending);
    o.answered(&[9; 16], Outcome::Delivered, 5);
    assert!(o.get(&[9; 16]).is_none());
}

#[test]
fn finished_rows_are_forgotten_after_a_while_and_make_room_when_full() {
    let policy = RetryPolicy { capacity: 2, ..RetryPolicy::default() };
    let mut o = Outbox::new(policy);
    o.enqueue(out(1), 0).unwrap();
    o.enqueue(out(2), 1).unwrap();
    // Full of undelivered messages: refused, with what to do.
    let err = o.enqueue(out(3), 2).unwrap_err();
    assert!(err.to_string().contains("wait for them"), "{err}");
    o.due(2);
    o.answered(&[1; 16], Outcome::Delivered, 3);
    writes(&mut o);
    // The delivered row makes room.
    o.enqueue(out(3), 4).unwrap();
    assert!(o.get(&[1; 16]).is_none());
    assert_eq!(writes(&mut o)[0], Write::Delete([1; 16]));
    // Finished rows are forgotten an hour after they finished.
    o.due(5);
    o.answered(&[2; 16], Outcome::Delivered, 10);
    o.expire(10 + 3_599_999);
    assert!(o.get(&[2; 16]).is_some());
    o.expire(10 + 3_600_000);
    assert!(o.get(&[2; 16]).is_none());
    assert_eq!(o.rows().len(), 1);
}

#[test]
fn unfinished_rows_from_before_a_restart_fail_and_finished_ones_stay() {
    let mut before = Outbox::new(RetryPolicy::default());
    for i in 1..=3 {
        before.enqueue(out(i), 0).unwrap();
    }
    before.due(0);
    before.answered(&[1; 16], Outcome::Delivered, 1);
    before.answered(&[2; 16], Outcome::NoAnswer("no answer".into()), 1);
    let on_disk: Vec<OutboxRow> = before.rows().into_iter().cloned().collect();
    let mut after = Outbox::new(RetryPolicy::default());
    after.restore(on_disk, 100);
    assert_eq!(after.get(&[1; 16]).unwrap().status, Delivery::Delivered);
    for id in [[2; 16], [3; 16]] {
        let row = after.get(&id).unwrap();
        assert_eq!(row.status, Delivery::Failed);
        assert_eq!(row.last_error.as_deref(), Some("interrupted by a restart"));
    }
    assert!(after.due(10_000).is_empty(), "nothing from before the restart is sent again");
    assert_eq!(writes(&mut after).len(), 2, "the two failures are written back");
}

#[test]
fn statuses_have_the_seed_names() {
    for d in [Delivery::Pending, Delivery::Sent, Delivery::Delivered, Delivery::Failed] {
        assert_eq!(Delivery::parse(d.as_str()), Some(d));
    }
    assert_eq!(Delivery::parse("lost"), None);
}
