package io.vfioproxy.testing;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/** The messages a logger (System.Logger, which goes to java.util.logging here) writes while a test runs. */
public final class LogCapture implements AutoCloseable {

    private final Logger logger;
    private final List<String> messages = new CopyOnWriteArrayList<>();
    private final Handler handler = new Handler() {
        @Override
        public void publish(LogRecord record) {
            messages.add(record.getLevel() + " " + record.getMessage());
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    private final Level level;

    private LogCapture(String name) {
        logger = Logger.getLogger(name);
        // Whatever another test (or the CLI, run in-process) set: this one sees INFO and above.
        level = logger.getLevel();
        logger.setLevel(Level.INFO);
        logger.addHandler(handler);
    }

    public static LogCapture of(String name) {
        return new LogCapture(name);
    }

    /** Every message so far, each with its level first ("WARNING agent ..."). */
    public List<String> messages() {
        return List.copyOf(messages);
    }

    /** The messages that contain every one of {@code parts}. */
    public List<String> containing(String... parts) {
        return messages.stream().filter(m -> List.of(parts).stream().allMatch(m::contains)).toList();
    }

    @Override
    public void close() {
        logger.removeHandler(handler);
        logger.setLevel(level);
    }
}
