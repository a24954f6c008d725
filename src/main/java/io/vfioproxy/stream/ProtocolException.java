package io.vfioproxy.stream;

/** The peer broke the protocol: the message says what was wrong and where. The connection must be closed. */
public final class ProtocolException extends RuntimeException {

    public ProtocolException(String message) {
        super(message);
    }
}
