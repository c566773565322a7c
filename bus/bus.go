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
