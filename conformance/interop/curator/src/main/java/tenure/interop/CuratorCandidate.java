package tenure.interop;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.LockInternals;
import org.apache.curator.framework.recipes.locks.StandardLockInternalsDriver;
import org.apache.curator.retry.RetryForever;
import org.apache.zookeeper.data.Stat;

/**
 * One Curator {@link LeaderSelector} candidate, driven by tenure's interop tests.
 *
 * <p>Usage: {@code CuratorCandidate CONNECT PATH ID SESSION_MS}. It joins the election at
 * PATH (participant id ID, the node's data) and prints one line per event, flushed:
 *
 * <ul>
 *   <li>{@code queued} once its node is among the participants;
 *   <li>{@code leading NODE CZXID OWNER} when {@code takeLeadership} is called (NODE is the
 *       lowest node as Curator sorts them, checked to hold ID; CZXID is its creation zxid,
 *       OWNER its session id in hex);
 *   <li>{@code released} when it gives leadership up after a {@code release} line on stdin;
 *   <li>{@code lost} when Curator interrupts its leadership (connection SUSPENDED/LOST);
 *   <li>{@code error TEXT} on anything unexpected (then it exits 1).
 * </ul>
 *
 * <p>EOF on stdin closes the selector and the client (its node goes) and exits 0. It does
 * not requeue after leading: one leadership per process.
 */
public final class CuratorCandidate {
    private static final String LOCK_NAME = "lock-"; // InterProcessMutex's, under LeaderSelector

    private CuratorCandidate() {}

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: CuratorCandidate CONNECT PATH ID SESSION_MS");
            System.exit(2);
        }
        String connect = args[0];
        String path = args[1];
        String id = args[2];
        int sessionMs = Integer.parseInt(args[3]);
        CountDownLatch release = new CountDownLatch(1);
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(sessionMs)
                .connectionTimeoutMs(Math.max(sessionMs, 5000))
                .retryPolicy(new RetryForever(100))
                .build();
        client.start();
        LeaderSelector selector = new LeaderSelector(client, path, new LeaderSelectorListenerAdapter() {
            @Override
            public void takeLeadership(CuratorFramework framework) throws Exception {
                List<String> sorted = LockInternals.getSortedChildren(
                        LOCK_NAME, new StandardLockInternalsDriver(),
                        framework.getChildren().forPath(path));
                String first = sorted.get(0);
                Stat stat = new Stat();
                byte[] data = framework.getData().storingStatIn(stat).forPath(path + "/" + first);
                String holder = new String(data, StandardCharsets.UTF_8);
                if (!holder.equals(id)) {
                    say("error lowest node " + first + " holds " + holder + ", not " + id);
                    System.exit(1);
                }
                say("leading " + first + " " + stat.getCzxid() + " "
                        + Long.toHexString(stat.getEphemeralOwner()));
                try {
                    release.await();
                    say("released");
                } catch (InterruptedException e) {
                    say("lost");
                    throw e;
                }
            }
        });
        selector.setId(id);
        selector.start();
        long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(Math.max(sessionMs, 30_000));
        // Curator creates the node on its own thread and tells nobody: poll until it shows.
        while (!queued(selector, id)) {
            if (System.nanoTime() > until) {
                say("error not queued in time");
                System.exit(1);
            }
            Thread.sleep(10);
        }
        say("queued");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("release")) {
                release.countDown();
            }
        }
        selector.close();
        client.close();
    }

    private static boolean queued(LeaderSelector selector, String id) throws Exception {
        for (Participant participant : selector.getParticipants()) {
            if (participant.getId().equals(id)) {
                return true;
            }
        }
        return false;
    }
}
