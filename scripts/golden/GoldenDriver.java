// Drives the real Java ZooKeeper client (Debian's 3.8.0 jars) through a fixed sequence of
// operations so that scripts/capture_golden.py can record the frames on the wire.
//
// Run with the JDK's single-file source launcher (no .class files are written):
//   java -cp /usr/share/java/zookeeper.jar scripts/golden/GoldenDriver.java 127.0.0.1:PROXYPORT
//
// The proxy in capture_golden.py drops the TCP connection (without forwarding the request) when
// it sees a `sync` of DROP_PATH; the driver uses that to provoke reconnects, so the capture holds
// a session-resuming ConnectRequest and the SetWatches / SetWatches2 batches that follow it.

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs.Ids;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class GoldenDriver {
    static final String DROP_PATH = "/zkit-golden-proxy-drop";

    /** Session states seen by the default watcher, so the driver can wait for (re)connects. */
    static final BlockingQueue<Watcher.Event.KeeperState> STATES = new LinkedBlockingQueue<>();

    static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static void say(String s) {
        System.out.println("driver: " + s);
        System.out.flush();
    }

    static void awaitState(Watcher.Event.KeeperState want) throws Exception {
        while (true) {
            Watcher.Event.KeeperState s = STATES.poll(30, TimeUnit.SECONDS);
            if (s == null) throw new IllegalStateException("timed out waiting for " + want);
            if (s == want) return;
        }
    }

    /** Run op, print the KeeperException code it fails with (these are the error goldens). */
    interface Call { void run() throws Exception; }

    static void expectError(String what, Call c) throws Exception {
        try {
            c.run();
            say(what + ": unexpectedly succeeded");
        } catch (KeeperException e) {
            say(what + ": " + e.code());
        }
    }

    /** Make the proxy cut the connection, then wait for the client to reconnect. */
    static void dropAndReconnect(ZooKeeper zk) throws Exception {
        STATES.clear();
        zk.sync(DROP_PATH, (rc, path, ctx) -> say("drop sync rc=" + rc), null);
        awaitState(Watcher.Event.KeeperState.Disconnected);
        awaitState(Watcher.Event.KeeperState.SyncConnected);
        say("reconnected");
    }

    public static void main(String[] args) throws Exception {
        String connect = args[0];
        Watcher stateWatcher = ev -> {
            say("event " + ev);
            if (ev.getType() == Watcher.Event.EventType.None) STATES.add(ev.getState());
        };

        // Session 1: new session, requested timeout 6000 ms -> pings after ~2 s of idleness.
        ZooKeeper zk = new ZooKeeper(connect, 6000, stateWatcher);
        awaitState(Watcher.Event.KeeperState.SyncConnected);
        long sessionId = zk.getSessionId();
        byte[] passwd = zk.getSessionPasswd();
        say("session 0x" + Long.toHexString(sessionId) + " timeout " + zk.getSessionTimeout());
        Thread.sleep(2600); // idle long enough for one ping

        Stat stat = new Stat();
        zk.create("/golden", b("hello"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create("/golden/p2", b("v1"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT, stat);
        String es = zk.create("/golden/es-", b("e"), Ids.OPEN_ACL_UNSAFE,
                CreateMode.EPHEMERAL_SEQUENTIAL);
        say("ephemeral sequential: " + es);
        zk.create("/golden/ps-", new byte[0], Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL);
        zk.create("/golden/container", null, Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER);
        expectError("createTTL", () -> zk.create("/golden/ttl", b("t"), Ids.OPEN_ACL_UNSAFE,
                CreateMode.PERSISTENT_WITH_TTL, new Stat(), 60000));

        zk.getData("/golden", true, stat);                // getData, watch=true
        zk.exists("/golden", false);                       // exists hit -> Stat
        zk.exists("/golden/missing", false);               // exists miss -> NONODE header
        zk.exists("/golden/later", true);                  // exists-watch on a missing node
        zk.setData("/golden", b("world"), -1);             // fires NodeDataChanged (xid -1)
        zk.getChildren("/golden", true, stat);             // getChildren2 with watch
        zk.getChildren("/golden", false);                  // getChildren (8)
        zk.getData("/golden", true, stat);                 // re-arm the data watch

        // Reconnect with only one-shot watches registered -> SetWatches (101).
        dropAndReconnect(zk);

        List<OpResult> ok = zk.multi(Arrays.asList(
                Op.create("/golden/m1", b("m"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.setData("/golden/p2", b("v2"), -1),
                Op.check("/golden", 1),
                Op.delete("/golden/m1", -1)));
        say("multi ok: " + ok.size() + " results");
        expectError("multi abort", () -> zk.multi(Arrays.asList(
                Op.create("/golden/m2", b("m"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.check("/golden", 999),
                Op.setData("/golden/p2", b("never"), -1))));
        List<OpResult> reads = zk.multi(Arrays.asList(
                Op.getData("/golden"), Op.getChildren("/golden"), Op.getData("/golden/missing")));
        say("multiRead: " + reads.size() + " results");

        zk.addWatch("/golden", AddWatchMode.PERSISTENT_RECURSIVE);
        zk.addWatch("/golden/p2", AddWatchMode.PERSISTENT);
        zk.setData("/golden/p2", b("v3"), -1);             // recursive + persistent events
        zk.create("/golden/p2/c", b("c"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        zk.create("/golden/later", b("now"), Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);

        // Reconnect with persistent watches registered -> SetWatches2 (105).
        zk.getData("/golden/p2", true, stat);
        dropAndReconnect(zk);

        say("whoAmI: " + zk.whoAmI());
        CountDownLatch synced = new CountDownLatch(1);
        zk.sync("/golden", (rc, path, ctx) -> synced.countDown(), null);
        synced.await(30, TimeUnit.SECONDS);
        zk.getACL("/golden", stat);
        zk.addAuthInfo("digest", b("user:secret"));
        zk.create("/golden/acl", b("a"), Ids.CREATOR_ALL_ACL, CreateMode.PERSISTENT);
        zk.setACL("/golden/acl", Ids.OPEN_ACL_UNSAFE, 0);
        say("whoAmI after auth: " + zk.whoAmI());
        say("allChildrenNumber: " + zk.getAllChildrenNumber("/golden"));
        say("ephemerals: " + zk.getEphemerals("/golden"));

        // removeWatches: a specific watcher -> checkWatches/removeWatches of that watcher;
        // removeAllWatches -> removeWatches (18).
        Watcher mine = ev -> say("my watcher: " + ev);
        zk.exists("/golden/p2/c", mine);
        zk.removeWatches("/golden/p2/c", mine, Watcher.WatcherType.Data, false);
        zk.getChildren("/golden/p2", true);
        zk.removeAllWatches("/golden/p2", Watcher.WatcherType.Children, false);
        expectError("removeAllWatches none", () ->
                zk.removeAllWatches("/golden/p2/c", Watcher.WatcherType.Data, false));

        expectError("create exists", () ->
                zk.create("/golden", null, Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT));
        expectError("delete not empty", () -> zk.delete("/golden", -1));
        expectError("setData bad version", () -> zk.setData("/golden", b("x"), 42));
        expectError("child of ephemeral", () -> zk.create(es + "/x", null, Ids.OPEN_ACL_UNSAFE,
                CreateMode.PERSISTENT));
        expectError("getData missing", () -> zk.getData("/golden/missing", false, null));

        zk.delete("/golden/p2/c", -1);
        zk.delete("/golden/later", 0);
        zk.close();                                        // closeSession (-11)
        say("closed session 1");

        // Session 2: resume the closed session -> the server answers timeOut=0 (expired).
        STATES.clear();
        ZooKeeper stale = new ZooKeeper(connect, 6000, stateWatcher, sessionId, passwd);
        awaitState(Watcher.Event.KeeperState.Expired);
        stale.close();
        say("session 1 resumed as expired");

        // Session 3: a read-only-capable client (readOnly=true in ConnectRequest).
        STATES.clear();
        ZooKeeper ro = new ZooKeeper(connect, 6000, stateWatcher, true);
        awaitState(Watcher.Event.KeeperState.SyncConnected);
        ro.getData("/golden", false, null);
        ro.close();
        say("done");
    }
}
