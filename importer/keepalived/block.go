package keepalived

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/gitedge/gitedge/importer/report"
)

// Block is one configuration line, with the lines inside its braces when
// it opens a block.
type Block struct {
	report.Pos
	Args     []string
	Children []*Block
	Braced   bool // the line opened a { } block
}

// Keyword returns the first word.
func (b *Block) Keyword() string { return b.Args[0] }

// String renders the line as written, without its block.
func (b *Block) String() string {
	s := strings.Join(b.Args, " ")
	if b.Braced {
		s += " { … }"
	}
	return s
}

// ReadFile returns the contents of a file named by an include; the
// importer passes os.ReadFile and a glob, tests an in-memory map.
type ReadFile func(name string) ([]byte, error)

// Glob expands an include pattern into file names.
type Glob func(pattern string) ([]string, error)

const maxIncludeDepth = 8

// lexer state for one file.
type parser struct {
	read ReadFile
	glob Glob
	errs *report.Errors
	// stack of files being read, to refuse include loops.
	files []string
}

// words splits a line into words: blanks separate, '#' and '!' at the
// start of a word begin a comment, double quotes keep blanks, and '{' and
// '}' are words of their own.
func words(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in := false
	flush := func() {
		if in {
			out = append(out, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case (c == '#' || c == '!') && !in:
			return out, nil
		case c == '{' || c == '}':
			if c == '{' && i+1 < len(line) && line[i+1] == '{' || c == '}' && i+1 < len(line) && line[i+1] == '}' {
				return nil, fmt.Errorf("a template placeholder %q is left unfilled: render the template (Jinja, Ansible) before importing", placeholder(line))
			}
			flush()
			out = append(out, string(c))
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated double quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			in = true
			i += j + 1
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	flush()
	return out, nil
}

func placeholder(line string) string {
	i := strings.Index(line, "{{")
	if i < 0 {
		return strings.TrimSpace(line)
	}
	if j := strings.Index(line[i:], "}}"); j > 0 {
		return line[i : i+j+2]
	}
	return strings.TrimSpace(line[i:])
}

// parseFile reads one file into a list of top-level blocks, following
// includes.
func (p *parser) parseFile(file string, data []byte) []*Block {
	if len(p.files) > maxIncludeDepth {
		p.errs.Add(report.Pos{File: file}, "include nesting deeper than %d", maxIncludeDepth)
		return nil
	}
	p.files = append(p.files, file)
	defer func() { p.files = p.files[:len(p.files)-1] }()

	type frame struct {
		b    *Block
		list *[]*Block
	}
	var top []*Block
	stack := []frame{{nil, &top}}
	report.Lines(file, data, p.errs, func(pos report.Pos, text string) {
		ws, err := words(text)
		if err != nil {
			p.errs.Add(pos, "%v", err)
			return
		}
		report.UTF8(pos, ws, p.errs)
		var cur *Block
		for _, w := range ws {
			switch w {
			case "{":
				if cur == nil {
					p.errs.Add(pos, "'{' without a keyword before it")
					cur = &Block{Pos: pos, Args: []string{"?"}}
				}
				cur.Braced = true
				list := stack[len(stack)-1].list
				*list = append(*list, cur)
				stack = append(stack, frame{cur, &cur.Children})
				cur = nil
			case "}":
				if cur != nil {
					p.add(stack[len(stack)-1].list, cur)
					cur = nil
				}
				if len(stack) == 1 {
					p.errs.Add(pos, "'}' closes no block")
					continue
				}
				stack = stack[:len(stack)-1]
			default:
				if cur == nil {
					cur = &Block{Pos: pos}
				}
				cur.Args = append(cur.Args, w)
			}
		}
		if cur != nil {
			p.add(stack[len(stack)-1].list, cur)
		}
	})
	for _, f := range stack[1:] {
		p.errs.Add(f.b.Pos, "block %q is not terminated: a '}' is missing before the end of the file", f.b.Keyword())
	}
	return top
}

// add appends a line, replacing an include by the blocks of its files.
func (p *parser) add(list *[]*Block, b *Block) {
	if b.Keyword() != "include" {
		*list = append(*list, b)
		return
	}
	if len(b.Args) != 2 {
		p.errs.Add(b.Pos, "include needs one file name or pattern")
		return
	}
	if p.read == nil || p.glob == nil {
		p.errs.Add(b.Pos, "include %s: includes are not read here", b.Args[1])
		return
	}
	pat := b.Args[1]
	if !path.IsAbs(pat) {
		pat = path.Join(path.Dir(b.File), pat)
	}
	names, err := p.glob(pat)
	if err != nil {
		p.errs.Add(b.Pos, "include %s: %v", b.Args[1], err)
		return
	}
	if len(names) == 0 {
		p.errs.Add(b.Pos, "include %s: no file matches", b.Args[1])
		return
	}
	sort.Strings(names)
	for _, n := range names {
		for _, open := range p.files {
			if open == n {
				p.errs.Add(b.Pos, "include %s: %s includes itself", b.Args[1], n)
				return
			}
		}
		data, err := p.read(n)
		if err != nil {
			p.errs.Add(b.Pos, "include %s: %v", b.Args[1], err)
			continue
		}
		*list = append(*list, p.parseFile(n, data)...)
	}
}
