// Curator InterProcessMutex acquire/release latency, for recipes-bench's interleaved comparison.
//
// usage: java -cp CURATOR_CLASSPATH:DIR CuratorLockBench CONNECT
// Prints READY once connected; then each stdin line "run N" does N uncontended acquire/release
// pairs on one InterProcessMutex and answers two lines: the acquire times, then the release
// times, in ms, space-separated. "quit" (or end of input) stops.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.StringJoiner;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.RetryNTimes;

public class CuratorLockBench {
    public static void main(String[] args) throws Exception {
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(args[0])
                .sessionTimeoutMs(10000)
                .retryPolicy(new RetryNTimes(3, 100))
                .build();
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            System.exit(1);
        }
        String path = "/curator-lock-bench-" + UUID.randomUUID();
        InterProcessMutex lock = new InterProcessMutex(client, path);
        System.out.println("READY");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split(" ");
            if (w[0].equals("quit")) break;
            int n = Integer.parseInt(w[1]);
            StringJoiner acq = new StringJoiner(" ");
            StringJoiner rel = new StringJoiner(" ");
            for (int i = 0; i < n; i++) {
                long t = System.nanoTime();
                lock.acquire();
                long t2 = System.nanoTime();
                lock.release();
                long t3 = System.nanoTime();
                acq.add(String.format("%.4f", (t2 - t) / 1e6));
                rel.add(String.format("%.4f", (t3 - t2) / 1e6));
            }
            System.out.println(acq);
            System.out.println(rel);
            System.out.flush();
        }
        client.delete().deletingChildrenIfNeeded().forPath(path);
        client.close();
    }
}
