package ingest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretComparedInConstantTime checks the structure of the code: the secret is
// only ever compared through subtle.ConstantTimeCompare, over digests of a fixed
// length. Every use of the secret in the package's source is one of: tested against ""
// (is one set?), hashed with sha256.Sum256 when the server is built, or, as a digest,
// an argument of subtle.ConstantTimeCompare. A comparison with == or bytes.Equal, which
// return at the first byte that differs, fails it.
func TestSecretComparedInConstantTime(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	compares := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stack []ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			stack = append(stack, n)
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || len(stack) < 2 {
				return true
			}
			parent := stack[len(stack)-2]
			switch sel.Sel.Name {
			case "Secret":
				if isTestAgainstEmpty(parent) || isHashed(stack) || isSelectorChainOf(parent, sel) {
					return true
				}
				t.Errorf("%s: the secret is used other than hashed or tested against \"\"", fset.Position(sel.Pos()))
			case "secretSum":
				switch {
				case isAssigned(parent, sel):
				case inCallTo(stack, "subtle", "ConstantTimeCompare"):
					compares++
				default:
					t.Errorf("%s: the secret's digest is used other than in subtle.ConstantTimeCompare", fset.Position(sel.Pos()))
				}
			}
			return true
		})
	}
	if compares == 0 {
		t.Error("no subtle.ConstantTimeCompare of the secret's digest")
	}
}

// isTestAgainstEmpty reports whether n is x != "" or x == "".
func isTestAgainstEmpty(n ast.Node) bool {
	b, ok := n.(*ast.BinaryExpr)
	if !ok || (b.Op != token.NEQ && b.Op != token.EQL) {
		return false
	}
	for _, e := range []ast.Expr{b.X, b.Y} {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Value == `""` {
			return true
		}
	}
	return false
}

// isHashed reports whether the innermost call around the node is []byte(...) inside
// sha256.Sum256.
func isHashed(stack []ast.Node) bool {
	return inCallTo(stack, "sha256", "Sum256")
}

// isSelectorChainOf reports whether n selects a field of sel (s.o.Secret is reached
// through s.o; that is not a use of its own).
func isSelectorChainOf(n ast.Node, sel *ast.SelectorExpr) bool {
	p, ok := n.(*ast.SelectorExpr)
	return ok && p.X == sel
}

// isAssigned reports whether sel is the left side of an assignment.
func isAssigned(n ast.Node, sel *ast.SelectorExpr) bool {
	a, ok := n.(*ast.AssignStmt)
	return ok && len(a.Lhs) == 1 && a.Lhs[0] == sel
}

// inCallTo reports whether a call to pkg.fn encloses the top of stack, with nothing
// but slicing, conversions and selectors between.
func inCallTo(stack []ast.Node, pkg, fn string) bool {
	for i := len(stack) - 2; i >= 0; i-- {
		switch n := stack[i].(type) {
		case *ast.SliceExpr, *ast.SelectorExpr, *ast.ArrayType:
		case *ast.CallExpr:
			if s, ok := n.Fun.(*ast.SelectorExpr); ok {
				if id, ok := s.X.(*ast.Ident); ok && id.Name == pkg && s.Sel.Name == fn {
					return true
				}
			}
			// a conversion such as []byte(x) continues outwards
			if _, ok := n.Fun.(*ast.ArrayType); !ok {
				return false
			}
		default:
			return false
		}
	}
	return false
}
