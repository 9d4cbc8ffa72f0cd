//! Fencing tokens and fenced multis: tokens only grow from holder to holder (lock holds and
//! leadership terms), and a holder whose session expired mid-hold can no longer write under
//! the lock or as leader.

mod common;

use zkit::Op;
use zkit_recipes::leader::{LeaderLatch, LeaderOptions};
use zkit_recipes::lock::{Mutex, MutexOptions};

use common::bounded;

#[tokio::test]
async fn tokens_grow_from_holder_to_holder() {
    let t = target!();
    let ns = t.namespace("fencing-tokens").await;
    let zk = ns.client().await;
    let m = Mutex::new(&zk, "/l", MutexOptions::default());
    let mut last = None;
    for _ in 0..3 {
        let g = m.acquire().await.unwrap();
        let again = m.acquire().await.unwrap();
        assert_eq!(
            again.token(),
            g.token(),
            "a re-entrant hold shares the token"
        );
        let st = zk.exists(g.node()).await.unwrap().unwrap();
        assert_eq!(g.token().0, st.czxid);
        assert!(Some(g.token()) > last, "tokens only grow");
        last = Some(g.token());
        again.release().await.unwrap();
        g.release().await.unwrap();
    }
}

#[tokio::test]
async fn a_fenced_multi_applies_only_while_the_lock_is_held() {
    let t = target!();
    let ns = t.namespace("fencing-multi").await;
    let f = ns.faulty_client(false).await;
    let zk = ns.client().await;
    common::put(&zk, "/data", b"0").await;
    let m = Mutex::new(&f.client, "/l", MutexOptions::default());
    let g = m.acquire().await.unwrap();
    let r = g
        .fenced_multi(vec![Op::set_data("/data", b"1", None)])
        .await
        .unwrap();
    assert_eq!(r.len(), 1, "only the caller's results");
    // An abort in the caller's ops is reported at the caller's index.
    match g
        .fenced_multi(vec![
            Op::set_data("/data", b"2", None),
            Op::set_data("/missing", b"x", None),
        ])
        .await
    {
        Err(zkit_recipes::Error::Zk(zkit::Error::MultiAborted { index, .. })) => {
            assert_eq!(index, 1)
        }
        other => panic!("expected an abort at op 1, got {other:?}"),
    }

    // The holder's session expires; another client takes the lock; the old holder's fenced
    // write is refused.
    f.expire().await;
    bounded("loss reported", g.lost()).await;
    let other = Mutex::new(&zk, "/l", MutexOptions::default())
        .acquire()
        .await
        .unwrap();
    assert!(other.token() > g.token());
    assert!(matches!(
        g.fenced_multi(vec![Op::set_data("/data", b"stale", None)])
            .await,
        Err(zkit_recipes::Error::Lost(_)) | Err(zkit_recipes::Error::Zk(_))
    ));
    assert_eq!(&zk.get_data("/data").await.unwrap().0[..], b"1");
    other.release().await.unwrap();
}

#[tokio::test]
async fn leadership_terms_carry_growing_tokens_and_a_lost_term_cannot_write() {
    let t = target!();
    let ns = t.namespace("fencing-leader").await;
    let zk = ns.client().await;
    common::put(&zk, "/data", b"0").await;
    let f = ns.faulty_client(false).await;
    let a = LeaderLatch::start(&f.client, "/election", LeaderOptions::new("a"))
        .await
        .unwrap();
    let term_a = bounded("a leads", a.leadership()).await.unwrap();
    let st = zk.exists(term_a.node()).await.unwrap().unwrap();
    assert_eq!(term_a.token().0, st.czxid, "the token is the node's czxid");
    term_a
        .fenced_multi(vec![Op::set_data("/data", b"a", None)])
        .await
        .unwrap();
    let b = LeaderLatch::start(&zk, "/election", LeaderOptions::new("b"))
        .await
        .unwrap();
    // The leader's session expires; the next participant takes over; the old term's fenced
    // write is refused, the new one's applies.
    f.expire().await;
    bounded("loss reported", term_a.lost()).await;
    let term_b = bounded("b leads", b.leadership()).await.unwrap();
    assert!(term_b.token() > term_a.token(), "tokens only grow");
    assert!(matches!(
        term_a
            .fenced_multi(vec![Op::set_data("/data", b"stale", None)])
            .await,
        Err(zkit_recipes::Error::Lost(_)) | Err(zkit_recipes::Error::Zk(_))
    ));
    term_b
        .fenced_multi(vec![Op::set_data("/data", b"b", None)])
        .await
        .unwrap();
    assert_eq!(&zk.get_data("/data").await.unwrap().0[..], b"b");
    b.close().await.unwrap();
}
