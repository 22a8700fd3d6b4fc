package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOrdersAreUniqueAndWithinTheBand(t *testing.T) {
	orders, err := NewOrders()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 3 * DistinctPrices {
		order := orders.Proto()
		if seen[order.ClientOrderId] {
			t.Fatalf("client_order_id %q twice", order.ClientOrderId)
		}
		seen[order.ClientOrderId] = true
		if order.Price < Mark || order.Price > Mark*1.01 {
			t.Fatalf("price %v outside the 1 %% band", order.Price)
		}
	}
}

func TestOPAInputIsTheOrderAsJSON(t *testing.T) {
	orders, err := NewOrders()
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Input map[string]any `json:"input"`
	}
	if err := json.Unmarshal(orders.OPAInput(), &body); err != nil {
		t.Fatal(err)
	}
	in, n := body.Input, 1.0
	if in["account"] != Account || in["strategy"] != Strategy || in["symbol"] != Symbol ||
		in["side"] != "BUY" || in["quantity"] != 1.0 || in["price"] != Mark*(1+n*1e-6) ||
		!strings.HasSuffix(in["client_order_id"].(string), "-1") {
		t.Fatalf("unexpected input %v", in)
	}
}
