import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.LockSupport;
import jdk.jfr.Event;
import jdk.jfr.Name;
import jdk.jfr.StackTrace;

/**
 * The Java program of Embers' JFR tests (crates/embers-cli/tests/jfr.rs), recorded by the
 * JDK's own flight recorder.
 *
 * cpu SECONDS: alpha() and beta() spin on the CPU in turns, 3 ms and 1 ms, so alpha has
 * about three quarters of the CPU samples.
 * alloc: smallObjects() allocates many small arrays (inside TLABs), bigArrays() a few
 * large ones (outside TLABs).
 * labels: commits JFR events named like async-profiler's allocation event, with the
 * contextId field pyroscope-java's labels refer to: 30 from checkout() with context 1
 * and span 0x1234abcd (span name: string 13 of the labels), 70 from search() with
 * context 2 and no span, each of 1000 bytes.
 * wall: sleeper() commits 10 events named like async-profiler's wall-clock sample, each
 * standing for 3 samples.
 * locks: contender() waits 5 times for a monitor another thread holds for 50 ms, and
 * parker() parks 5 times for 30 ms.
 */
public class Work {
    static volatile long sink;

    static void spin(long nanos) {
        long end = System.nanoTime() + nanos;
        long x = sink;
        while (System.nanoTime() < end) {
            for (int i = 0; i < 1000; i++) {
                x = x * 6364136223846793005L + 1442695040888963407L;
            }
        }
        sink = x;
    }

    static void alpha() {
        spin(3_000_000);
    }

    static void beta() {
        spin(1_000_000);
    }

    static void smallObjects() {
        for (int i = 0; i < 200_000; i++) {
            byte[] b = new byte[64];
            sink += b.length;
        }
    }

    static void bigArrays() {
        for (int i = 0; i < 40; i++) {
            byte[] b = new byte[4 << 20];
            sink += b.length;
        }
    }

    @Name("jdk.ObjectAllocationInNewTLAB")
    @StackTrace(true)
    static class Allocation extends Event {
        long allocationSize;
        long tlabSize;
        long contextId;
        long spanId;
        long spanName;
    }

    @Name("profiler.WallClockSample")
    @StackTrace(true)
    static class WallClockSample extends Event {
        int samples;
    }

    static void sleeper() {
        for (int i = 0; i < 10; i++) {
            WallClockSample w = new WallClockSample();
            w.samples = 3;
            w.commit();
        }
    }

    static void allocation(long context, long spanId, long spanName) {
        Allocation a = new Allocation();
        a.allocationSize = 1000;
        a.tlabSize = 1000;
        a.contextId = context;
        a.spanId = spanId;
        a.spanName = spanName;
        a.commit();
    }

    static void checkout() {
        for (int i = 0; i < 30; i++) {
            allocation(1, 0x1234abcdL, 13);
        }
    }

    static void search() {
        for (int i = 0; i < 70; i++) {
            allocation(2, 0, 0);
        }
    }

    static final Object MONITOR = new Object();

    static void contender() throws InterruptedException {
        CountDownLatch held = new CountDownLatch(1);
        Thread holder = new Thread(() -> {
            synchronized (MONITOR) {
                held.countDown();
                LockSupport.parkNanos(50_000_000);
            }
        });
        holder.start();
        held.await();
        synchronized (MONITOR) {
            sink++;
        }
        holder.join();
    }

    static void parker() {
        LockSupport.parkNanos(30_000_000);
    }

    public static void main(String[] args) throws InterruptedException {
        switch (args[0]) {
            case "cpu": {
                long end = System.nanoTime() + Long.parseLong(args[1]) * 1_000_000_000L;
                while (System.nanoTime() < end) {
                    alpha();
                    beta();
                }
                break;
            }
            case "alloc":
                for (int round = 0; round < 5; round++) {
                    smallObjects();
                    bigArrays();
                }
                break;
            case "labels":
                checkout();
                search();
                break;
            case "wall":
                sleeper();
                break;
            case "locks":
                for (int i = 0; i < 5; i++) {
                    contender();
                    parker();
                }
                break;
            default:
                throw new IllegalArgumentException(args[0]);
        }
    }
}
