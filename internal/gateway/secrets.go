package gateway

func (g *gateway) secretRoutes() []route { return nil }
