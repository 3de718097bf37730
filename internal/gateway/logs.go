package gateway

func (g *gateway) logRoutes() []route { return nil }
