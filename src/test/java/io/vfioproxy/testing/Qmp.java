package io.vfioproxy.testing;

import io.vertx.core.json.JsonObject;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** A QMP client over QEMU's unix socket: one command at a time, events kept aside. Blocking; test threads only. */
public final class Qmp implements AutoCloseable {

    private final SocketChannel socket;
    private final BufferedReader in;
    private final OutputStream out;
    private final List<JsonObject> events = new ArrayList<>();

    private Qmp(SocketChannel socket) throws IOException {
        this.socket = socket;
        this.in = new BufferedReader(new InputStreamReader(Channels.newInputStream(socket), StandardCharsets.UTF_8));
        this.out = Channels.newOutputStream(socket);
        JsonObject greeting = read();
        if (!greeting.containsKey("QMP")) {
            throw new IOException("not a QMP greeting: " + greeting);
        }
        execute("qmp_capabilities", new JsonObject());
    }

    public static Qmp connect(Path path) throws IOException {
        return new Qmp(SocketChannel.open(UnixDomainSocketAddress.of(path)));
    }

    private JsonObject read() throws IOException {
        String line = in.readLine();
        if (line == null) {
            throw new IOException("QMP closed");
        }
        return new JsonObject(line);
    }

    /** Runs {@code command}; returns its "return" value as an object (empty where QEMU returns none). */
    public synchronized JsonObject execute(String command, JsonObject arguments) throws IOException {
        JsonObject request = new JsonObject().put("execute", command);
        if (!arguments.isEmpty()) {
            request.put("arguments", arguments);
        }
        out.write((request.encode() + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
        while (true) {
            JsonObject reply = read();
            if (reply.containsKey("event")) {
                events.add(reply);
                continue;
            }
            if (reply.containsKey("error")) {
                throw new IOException(command + ": " + reply.getJsonObject("error").getString("desc"));
            }
            return reply.getValue("return") instanceof JsonObject o ? o : new JsonObject();
        }
    }

    public JsonObject execute(String command) throws IOException {
        return execute(command, new JsonObject());
    }

    /** The events QEMU sent so far. */
    public synchronized List<JsonObject> events() {
        return List.copyOf(events);
    }

    @Override
    public void close() throws IOException {
        socket.close();
    }
}
