// Package bus holds the messages the bridge exchanges with the MQTT broker, free of any client library.
package bus

// Message is one outgoing message. An empty retained payload clears the
// retained message on the broker.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
	// Renewable marks a retained payload its sender can produce again on
	// request (see mqttpub.Client.SetSource): a publisher need then keep
	// only its sum to republish it after a reconnect.
	Renewable bool
	// Late, on a message that is not retained, makes it one that must not
	// be lost to a broker outage: while the broker is away the publisher
	// keeps it (bounded) and, once the broker is back, sends Late in its
	// place (the same news, saying it comes late).
	Late []byte
}

// Inbound is one received message.
type Inbound struct {
	Topic string
	// Payload is the message, or only its first bytes when Truncated: it
	// was over the subscription's limit.
	Payload   []byte
	Truncated bool
	// Size is the payload's length as received.
	Size     int
	Retained bool
}
