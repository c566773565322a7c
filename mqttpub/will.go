package mqttpub

import (
	"context"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// HoldWill keeps a connection of its own open until ctx ends, whose last
// will publishes payload retained on topic: the broker sends it when this
// process dies or loses the broker, and a clean end (ctx) discards it.
// The last member of a group of bridges holds the bridge's "offline"
// this way: its main connection's will is its own announcement's.
func (c *Client) HoldWill(ctx context.Context, topic string, payload []byte) {
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
	for {
		if !c.connect(ctx, cli, false) {
			cli.Disconnect(0)
			return
		}
		select {
		case <-ctx.Done():
			cli.Disconnect(100) // a DISCONNECT: the broker drops the will
			return
		case <-lost:
		}
	}
}
