// Apache Curator recipes driven line by line from stdin, for recipes/tests/curator_*.rs.
//
// Usage: java -cp CURATOR_CLASSPATH:DIR CuratorDriver CONNECT_STRING (a chroot suffix is fine).
// Prints "READY" once connected. Then each stdin line is "TAG VERB ARGS..." and gets exactly one
// answer line "TAG RESULT..." on stdout. Commands on one object run in order on that object's own
// thread (Curator's locks are owned by a thread); commands on different objects run side by side,
// so a blocking acquire does not hold up the rest. Answers may come out of order, which is why
// they carry the tag. Objects are named by the test ("NAME") and kept in a map.
//
// Verbs (RESULT in brackets):
//   mutex NAME PATH                       InterProcessMutex                      [OK]
//   rwlock NAME PATH                      InterProcessReadWriteLock: NAME.read and NAME.write
//   semaphore NAME PATH MAX               InterProcessSemaphoreV2                 [OK]
//   acquire NAME MILLIS                   mutex / rwlock side / semaphore lease   [HELD | TIMEOUT]
//   release NAME                          one hold or one lease                   [RELEASED]
//   latch NAME PATH ID                    LeaderLatch, started                    [OK]
//   selector NAME PATH ID                 LeaderSelector (auto-requeue); a term lasts until
//                                         "relinquish NAME"                       [OK]
//   leader NAME                           hasLeadership                           [true | false]
//   await NAME MILLIS                     latch or selector becomes leader        [LEADER | TIMEOUT]
//   relinquish NAME                       end the selector's current term         [OK]
//   close NAME                            close a latch, selector, cache, ...     [CLOSED]
//   barrier NAME PATH / setbarrier NAME / removebarrier NAME                      [OK]
//   waitbarrier NAME MILLIS               DistributedBarrier.waitOnBarrier        [PASSED | TIMEOUT]
//   dbarrier NAME PATH N                  DistributedDoubleBarrier                [OK]
//   enter NAME MILLIS / leave NAME MILLIS                                         [ENTERED | LEFT | TIMEOUT]
//   sharedcount NAME PATH SEED            SharedCount, started                    [OK]
//   count NAME                            current value                           [N]
//   setcount NAME N                       setCount                                [OK]
//   awaitcount NAME N MILLIS              the value (via listener) becomes N      [N | TIMEOUT]
//   group NAME PATH ID DATA               GroupMember, started                    [OK]
//   members NAME                          current members, sorted                 [id=data,...]
//   discovery NAME BASE                   ServiceDiscovery (Map payload), started  [OK]
//   register NAME SERVICE ID ADDRESS PORT K=V   registerService                   [OK]
//   unregister NAME SERVICE ID                                                    [OK]
//   query NAME SERVICE                    queryForInstances, sorted by id         [id@address:port{k=v},...]
//   cache NAME PATH                       CuratorCache, started                   [OK]
//   cacheget NAME PATH                    the cached data                         [DATA | NONE]
//   awaitcache NAME PATH DATA MILLIS      the cache holds PATH with DATA          [OK | TIMEOUT]
//   create PATH DATA / set PATH DATA      plain writes                            [OK]
//   get PATH                                                                      [DATA | NONE]
//   children PATH                         sorted                                  [a,b,...]
//   session                               the session id in hex                   [0x...]
//   expire                                expire this driver's session for real: open a second
//                                         connection on the same session and close it [EXPIRED]
//   quit                                                                          [BYE]
// Failures answer "TAG ERROR <exception>".

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessLock;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.retry.RetryNTimes;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.zookeeper.ZooKeeper;

public class CuratorDriver {
    static CuratorFramework client;
    static String connect;
    static final Map<String, Object> objects = new ConcurrentHashMap<>();
    static final Map<String, Deque<Lease>> leases = new ConcurrentHashMap<>();
    static final Map<String, Semaphore> terms = new ConcurrentHashMap<>();
    static final Map<String, ExecutorService> lanes = new ConcurrentHashMap<>();
    static final Set<String> PLAIN = Set.of("create", "set", "get", "children", "session", "expire");

    public static void main(String[] args) throws Exception {
        connect = args[0];
        client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(4000)
                .connectionTimeoutMs(20000)
                .retryPolicy(new RetryNTimes(Integer.MAX_VALUE, 50))
                .build();
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            System.out.println("FAILED to connect");
            System.exit(1);
        }
        out("READY");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        ExecutorService pool = Executors.newCachedThreadPool(r -> {
            Thread t = new Thread(r);
            t.setDaemon(true);
            return t;
        });
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split(" ");
            if (w.length < 2) continue;
            if (w[1].equals("quit")) {
                out(w[0] + " BYE");
                break;
            }
            // Curator's locks belong to the thread that took them: every command on one object
            // (rwlock sides included) runs on that object's own thread, in order.
            ExecutorService exec = PLAIN.contains(w[1]) ? pool
                    : lanes.computeIfAbsent(w[2].split("\\.")[0], k -> Executors.newSingleThreadExecutor(r -> {
                        Thread t = new Thread(r);
                        t.setDaemon(true);
                        return t;
                    }));
            exec.submit(() -> {
                String r;
                try {
                    r = run(w);
                } catch (Throwable e) {
                    r = "ERROR " + e.toString().replace('\n', ' ');
                }
                out(w[0] + " " + r);
            });
        }
        client.close();
        System.exit(0);
    }

    static synchronized void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return b == null ? "" : new String(b, StandardCharsets.UTF_8);
    }

    @SuppressWarnings("unchecked")
    static <T> T obj(String name) {
        Object o = objects.get(name);
        if (o == null) throw new IllegalArgumentException("no object " + name);
        return (T) o;
    }

    static String run(String[] w) throws Exception {
        switch (w[1]) {
            case "mutex":
                objects.put(w[2], new InterProcessMutex(client, w[3]));
                return "OK";
            case "rwlock": {
                InterProcessReadWriteLock rw = new InterProcessReadWriteLock(client, w[3]);
                objects.put(w[2] + ".read", rw.readLock());
                objects.put(w[2] + ".write", rw.writeLock());
                return "OK";
            }
            case "semaphore":
                objects.put(w[2], new InterProcessSemaphoreV2(client, w[3], Integer.parseInt(w[4])));
                leases.put(w[2], new ConcurrentLinkedDeque<>());
                return "OK";
            case "acquire": {
                Object o = obj(w[2]);
                long ms = Long.parseLong(w[3]);
                if (o instanceof InterProcessSemaphoreV2) {
                    Lease l = ((InterProcessSemaphoreV2) o).acquire(ms, TimeUnit.MILLISECONDS);
                    if (l == null) return "TIMEOUT";
                    leases.get(w[2]).push(l);
                    return "HELD";
                }
                return ((InterProcessLock) o).acquire(ms, TimeUnit.MILLISECONDS) ? "HELD" : "TIMEOUT";
            }
            case "release": {
                Object o = obj(w[2]);
                if (o instanceof InterProcessSemaphoreV2) {
                    leases.get(w[2]).pop().close();
                } else {
                    ((InterProcessLock) o).release();
                }
                return "RELEASED";
            }
            case "latch": {
                LeaderLatch l = new LeaderLatch(client, w[3], w[4]);
                l.start();
                objects.put(w[2], l);
                return "OK";
            }
            case "selector": {
                Semaphore end = new Semaphore(0);
                terms.put(w[2], end);
                LeaderSelector s = new LeaderSelector(client, w[3], new LeaderSelectorListenerAdapter() {
                    @Override
                    public void takeLeadership(CuratorFramework c) throws Exception {
                        end.acquire();
                    }
                });
                s.setId(w[4]);
                s.autoRequeue();
                s.start();
                objects.put(w[2], s);
                return "OK";
            }
            case "leader": {
                Object o = obj(w[2]);
                boolean l = o instanceof LeaderLatch ? ((LeaderLatch) o).hasLeadership()
                        : ((LeaderSelector) o).hasLeadership();
                return Boolean.toString(l);
            }
            case "await": {
                Object o = obj(w[2]);
                long ms = Long.parseLong(w[3]);
                if (o instanceof LeaderLatch) {
                    return ((LeaderLatch) o).await(ms, TimeUnit.MILLISECONDS) ? "LEADER" : "TIMEOUT";
                }
                LeaderSelector s = (LeaderSelector) o;
                long end = System.currentTimeMillis() + ms;
                while (System.currentTimeMillis() < end) {
                    if (s.hasLeadership()) return "LEADER";
                    Thread.sleep(20);
                }
                return "TIMEOUT";
            }
            case "relinquish":
                terms.get(w[2]).release();
                return "OK";
            case "close": {
                Object o = objects.remove(w[2]);
                if (o instanceof LeaderSelector) {
                    terms.get(w[2]).release(1000);
                }
                if (o instanceof AutoCloseable) ((AutoCloseable) o).close();
                return "CLOSED";
            }
            case "barrier":
                objects.put(w[2], new DistributedBarrier(client, w[3]));
                return "OK";
            case "setbarrier":
                ((DistributedBarrier) obj(w[2])).setBarrier();
                return "OK";
            case "removebarrier":
                ((DistributedBarrier) obj(w[2])).removeBarrier();
                return "OK";
            case "waitbarrier":
                return ((DistributedBarrier) obj(w[2])).waitOnBarrier(Long.parseLong(w[3]), TimeUnit.MILLISECONDS)
                        ? "PASSED" : "TIMEOUT";
            case "dbarrier":
                objects.put(w[2], new DistributedDoubleBarrier(client, w[3], Integer.parseInt(w[4])));
                return "OK";
            case "enter":
                return ((DistributedDoubleBarrier) obj(w[2])).enter(Long.parseLong(w[3]), TimeUnit.MILLISECONDS)
                        ? "ENTERED" : "TIMEOUT";
            case "leave":
                return ((DistributedDoubleBarrier) obj(w[2])).leave(Long.parseLong(w[3]), TimeUnit.MILLISECONDS)
                        ? "LEFT" : "TIMEOUT";
            case "sharedcount": {
                SharedCount c = new SharedCount(client, w[3], Integer.parseInt(w[4]));
                c.start();
                objects.put(w[2], c);
                return "OK";
            }
            case "count":
                return Integer.toString(((SharedCount) obj(w[2])).getCount());
            case "setcount":
                ((SharedCount) obj(w[2])).setCount(Integer.parseInt(w[3]));
                return "OK";
            case "awaitcount": {
                SharedCount c = obj(w[2]);
                int want = Integer.parseInt(w[3]);
                long end = System.currentTimeMillis() + Long.parseLong(w[4]);
                while (System.currentTimeMillis() < end) {
                    if (c.getCount() == want) return Integer.toString(want);
                    Thread.sleep(20);
                }
                return "TIMEOUT";
            }
            case "group": {
                GroupMember g = new GroupMember(client, w[3], w[4], bytes(w[5]));
                g.start();
                objects.put(w[2], g);
                return "OK";
            }
            case "members": {
                Map<String, byte[]> m = new TreeMap<>(((GroupMember) obj(w[2])).getCurrentMembers());
                StringJoiner j = new StringJoiner(",");
                m.forEach((k, v) -> j.add(k + "=" + text(v)));
                return j.toString();
            }
            case "discovery": {
                @SuppressWarnings({"rawtypes", "unchecked"})
                ServiceDiscovery<Map> d = ServiceDiscoveryBuilder.builder(Map.class)
                        .client(client)
                        .basePath(w[3])
                        .serializer(new JsonInstanceSerializer<>(Map.class))
                        .build();
                d.start();
                objects.put(w[2], d);
                return "OK";
            }
            case "register": {
                @SuppressWarnings("unchecked")
                ServiceDiscovery<Map<String, String>> d = obj(w[2]);
                Map<String, String> payload = new HashMap<>();
                for (int i = 7; i < w.length; i++) {
                    String[] kv = w[i].split("=", 2);
                    payload.put(kv[0], kv[1]);
                }
                ServiceInstance<Map<String, String>> inst = ServiceInstance.<Map<String, String>>builder()
                        .name(w[3]).id(w[4]).address(w[5]).port(Integer.parseInt(w[6]))
                        .payload(payload).build();
                d.registerService(inst);
                objects.put(w[2] + "/" + w[3] + "/" + w[4], inst);
                return "OK";
            }
            case "unregister": {
                @SuppressWarnings("unchecked")
                ServiceDiscovery<Map<String, String>> d = obj(w[2]);
                @SuppressWarnings("unchecked")
                ServiceInstance<Map<String, String>> inst = (ServiceInstance<Map<String, String>>) objects
                        .remove(w[2] + "/" + w[3] + "/" + w[4]);
                d.unregisterService(inst);
                return "OK";
            }
            case "query": {
                @SuppressWarnings("unchecked")
                ServiceDiscovery<Map<String, Object>> d = obj(w[2]);
                List<ServiceInstance<Map<String, Object>>> all = new ArrayList<>(d.queryForInstances(w[3]));
                all.sort(Comparator.comparing(ServiceInstance::getId));
                StringJoiner j = new StringJoiner(",");
                for (ServiceInstance<Map<String, Object>> i : all) {
                    Map<String, Object> p = i.getPayload() == null ? new TreeMap<>() : new TreeMap<>(i.getPayload());
                    j.add(i.getId() + "@" + i.getAddress() + ":" + i.getPort() + p.toString().replace(" ", ""));
                }
                return j.toString();
            }
            case "cache": {
                CuratorCache c = CuratorCache.build(client, w[3]);
                c.start();
                objects.put(w[2], c);
                return "OK";
            }
            case "cacheget": {
                Optional<ChildData> d = ((CuratorCache) obj(w[2])).get(w[3]);
                return d.map(c -> text(c.getData())).orElse("NONE");
            }
            case "awaitcache": {
                CuratorCache c = obj(w[2]);
                long end = System.currentTimeMillis() + Long.parseLong(w[5]);
                while (System.currentTimeMillis() < end) {
                    Optional<ChildData> d = c.get(w[3]);
                    if (d.isPresent() && text(d.get().getData()).equals(w[4])) return "OK";
                    Thread.sleep(20);
                }
                return "TIMEOUT";
            }
            case "create":
                client.create().creatingParentsIfNeeded().forPath(w[2], bytes(w.length > 3 ? w[3] : ""));
                return "OK";
            case "set":
                client.setData().forPath(w[2], bytes(w[3]));
                return "OK";
            case "get":
                try {
                    return text(client.getData().forPath(w[2]));
                } catch (org.apache.zookeeper.KeeperException.NoNodeException e) {
                    return "NONE";
                }
            case "children": {
                List<String> k = new ArrayList<>(client.getChildren().forPath(w[2]));
                Collections.sort(k);
                return String.join(",", k);
            }
            case "session":
                return "0x" + Long.toHexString(client.getZookeeperClient().getZooKeeper().getSessionId());
            case "expire": {
                ZooKeeper zk = client.getZookeeperClient().getZooKeeper();
                CountDownLatch up = new CountDownLatch(1);
                ZooKeeper twin = new ZooKeeper(connect, 4000, e -> {
                    if (e.getState() == org.apache.zookeeper.Watcher.Event.KeeperState.SyncConnected) {
                        up.countDown();
                    }
                }, zk.getSessionId(), zk.getSessionPasswd());
                up.await(30, TimeUnit.SECONDS);
                twin.close();
                return "EXPIRED";
            }
            default:
                return "ERROR unknown verb " + w[1];
        }
    }
}
