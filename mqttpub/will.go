package mqttpub

import (
	"context"
	"errors"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
)

// HoldWill keeps a connection of its own open until ctx ends, whose last
// will publishes payload retained on topic: the broker sends it when this
// process dies or loses the broker, and a clean end (ctx) discards it.
// The last member of a group of bridges holds the bridge's "offline"
// this way: its main connection's will is its own announcement's. held,
// when set, is told each time the will is held (the connection is up).
func (c *Client) HoldWill(ctx context.Context, topic string, payload []byte, held func()) {
	o := *c.opts
	o.ClientID = truncateID(c.cfg.ClientID + "-will")
	o.SetBinaryWill(topic, payload, 1, true)
	lost := make(chan struct{}, 1)
	o.OnConnect = nil
	o.OnConnectionLost = func(mqtt.Client, error) {
		select {
		case lost <- struct{}{}:
		default:
		}
	}
	cli := mqtt.NewClient(&o)
	delay := 500 * time.Millisecond
	for {
		// A connect is let finish even when ctx ends meanwhile: one cut
		// short would end uncleanly, and its will say "offline".
		t := cli.Connect()
		t.WaitTimeout(c.cfg.ConnectTimeout)
		if t.Error() == nil && cli.IsConnectionOpen() {
			delay = 500 * time.Millisecond
			if held != nil {
				held()
			}
			select {
			case <-ctx.Done():
				cli.Disconnect(100) // a DISCONNECT: the broker drops the will
				return
			case <-lost:
				continue
			}
		}
		select {
		case <-ctx.Done():
			cli.Disconnect(100)
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, c.cfg.MaxReconnectInterval)
	}
}

// PublishAcked sends one message that is not retained at QoS 1 and
// returns once the broker has acknowledged it: a group member's claim on
// a command must be at the broker before the action reaches the cloud.
func (c *Client) PublishAcked(ctx context.Context, m bus.Message) error {
	c.mu.Lock()
	if !c.cli.IsConnectionOpen() {
		c.mu.Unlock()
		return errors.New("not connected to the broker")
	}
	t := c.cli.Publish(m.Topic, 1, false, m.Payload)
	c.published.Add(1)
	c.mu.Unlock()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
