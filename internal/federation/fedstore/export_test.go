package fedstore

import "context"

// Compact compacts the store's history up to now, for tests of a watch
// from a position no longer kept.
func (s *Store) Compact(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.prefix+"/")
	if err != nil {
		return err
	}
	_, err = s.cli.Compact(ctx, resp.Header.Revision)
	return err
}
