package order_test

import (
	"fmt"
	"time"

	"github.com/txconsume/txconsume/examples/order-service/order"
)

// A producer publishes one order-paid message per captured payment. The order number is the
// message's key: the consumer deduplicates by it.
func ExampleNewPaidMessage() {
	msg, err := order.NewPaidMessage("order-paid", order.PaidEvent{
		OrderNo: "ORD-000042", PaymentID: "PAY-9f1c", AmountCents: 2599,
		PaidAt: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.GetKeys(), msg.GetTags())
	fmt.Println(string(msg.Body))
	// Output:
	// ORD-000042 OrderPaid
	// {"order_no":"ORD-000042","payment_id":"PAY-9f1c","amount_cents":2599,"paid_at":"2025-05-01T12:00:00Z"}
}
