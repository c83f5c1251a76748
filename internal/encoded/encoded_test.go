package encoded

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

func TestServerCodecPassesMessagesOnly(t *testing.T) {
	t.Parallel()
	c := NewServerCodec()
	want := &healthpb.HealthCheckRequest{Service: "fedreport.v1.CoordinatorService"}
	data, err := c.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := &healthpb.HealthCheckRequest{}
	if err := c.Unmarshal(data, got); err != nil || !proto.Equal(got, want) {
		t.Errorf("proto message round trip: got %v, %v; want %v", got, err, want)
	}
	data.Free()

	m := NewMessage(mem.BufferSlice{mem.SliceBuffer("\x0a\x01x")})
	if string(m.Bytes()) != "\x0a\x01x" {
		t.Errorf("Bytes: got %q", m.Bytes())
	}
	data, err = c.Marshal(m)
	if err != nil || string(data.Materialize()) != "\x0a\x01x" {
		t.Errorf("encoded message: got %q, %v; want its bytes", data.Materialize(), err)
	}
	if _, err := c.Marshal(m); !errors.Is(err, ErrSent) {
		t.Errorf("encoded message marshalled twice: got %v, want ErrSent", err)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("a string: got no error, want the proto codec's")
	}
}

func TestDescReplacesNamedHandlersOnly(t *testing.T) {
	t.Parallel()
	h := Handler(healthpb.Health_Check_FullMethodName, func(any, context.Context, *healthpb.HealthCheckRequest) (any, error) {
		return NewMessage(nil), nil
	})
	d := Desc(healthpb.Health_ServiceDesc, map[string]grpc.MethodHandler{"Check": h})
	if d.ServiceName != healthpb.Health_ServiceDesc.ServiceName || len(d.Methods) != len(healthpb.Health_ServiceDesc.Methods) {
		t.Fatalf("Desc changed the service: %+v", d)
	}
	resp, err := d.Methods[0].Handler(nil, context.Background(), func(v any) error {
		_, ok := v.(*healthpb.HealthCheckRequest)
		if !ok {
			t.Errorf("decoded into %T", v)
		}
		return nil
	}, nil)
	if _, ok := resp.(*Message); err != nil || !ok {
		t.Errorf("replaced handler: got %T, %v", resp, err)
	}
	// The generated description keeps its own handler.
	orig, err := healthpb.Health_ServiceDesc.Methods[0].Handler(health.NewServer(), context.Background(), func(any) error { return nil }, nil)
	if _, ok := orig.(*healthpb.HealthCheckResponse); err != nil || !ok {
		t.Errorf("generated handler: got %T, %v; want the health server's answer", orig, err)
	}
	defer func() {
		if recover() == nil {
			t.Error("a handler for no method: no panic")
		}
	}()
	Desc(healthpb.Health_ServiceDesc, map[string]grpc.MethodHandler{"Chek": h})
}
