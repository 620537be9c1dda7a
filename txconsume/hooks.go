package txconsume

import "context"

// start calls OnStart, keeping ctx when there is no hook or the hook returns nil.
func (h *Hooks) start(ctx context.Context, group string, msg *Message) context.Context {
	if h.OnStart == nil {
		return ctx
	}
	if hctx := h.OnStart(ctx, group, msg); hctx != nil {
		return hctx
	}
	return ctx
}
