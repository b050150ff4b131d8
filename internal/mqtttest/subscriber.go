package mqtttest

import (
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Subscribe connects to url as clientID with a persistent session
// (clean session off), subscribes to filter at QoS 1 and passes every
// message to handle (on paho's goroutine). It reconnects by itself within
// 200 ms and subscribes again on every connection. It returns once the
// broker has acknowledged the subscription: a broker stopped before it saw
// the SUBSCRIBE would keep a session without it, and the messages of an
// outage would be lost to the test. The client disconnects when the test
// ends.
func Subscribe(t testing.TB, url, clientID, filter string, handle func(topic string, payload []byte)) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe(filter, 1, nil) }).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { handle(m.Topic(), m.Payload()) })
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber %s on %s: %v", clientID, url, tok.Error())
	}
	// The handler above subscribes asynchronously; a second, synchronous
	// subscription to the same filter waits for the broker's SUBACK.
	if tok := c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s on %s: %v", filter, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}
