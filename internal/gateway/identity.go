package gateway

func (g *gateway) identityRoutes() []route { return nil }
