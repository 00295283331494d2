"""Tree-sitter queries that find definitions and imports, one query per language.

Capture names are the contract with `deterministic.py`:

- `@def.KIND` marks a definition node (its range gives nesting, its text the signature);
  `@local.KIND` is the same, except that the symbol is dropped when the nearest enclosing
  definition is a function or method (a local variable, not part of the file's interface).
- `@name` is the identifier that names it (its line is the symbol's line). Without one, the
  extractor derives the name: `@decl` (a C declarator chain), `@embed` (a Go embedded field's type).
- `@recv` names an explicit parent: a Go method's receiver type, `Foo` in `Foo.prototype.bar = ...`.
- `@value` is an assigned value, so a variable holding a function is reported as a function.
- `@scope` is an anonymous function: not a symbol, but the variables in it are locals.
- `@hoist` marks a definition that belongs to the one around its enclosing definition (a TS
  constructor parameter property is a field of the class, not of the constructor).
- `@is.WORD` must be an identifier spelled WORD, or the match is ignored (checked in Python:
  text predicates would read node text back through the parse callback, which is slow).
- `@import` is a node the language's import reader turns into module names.

Patterns are listed most specific first: when two patterns capture the same definition, the
earlier one wins. Matching runs in C over the whole tree, so only hits reach Python.
"""

from __future__ import annotations

_PYTHON = r"""
(class_definition name: (identifier) @name) @def.class
(function_definition name: (identifier) @name) @def.function
(type_alias_statement (type (identifier) @name)) @def.type
(expression_statement
  (assignment left: (identifier) @name right: (lambda) @value)) @local.function
(expression_statement (assignment left: (identifier) @name)) @local.variable
(expression_statement (assignment left: (pattern_list (identifier) @name))) @local.variable
(expression_statement (assignment left: (tuple_pattern (identifier) @name))) @local.variable
(import_statement) @import
(import_from_statement) @import
(future_import_statement) @import
"""

# Shared by JavaScript and TypeScript: node types both grammars have.
_ECMA_COMMON = r"""
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(class_declaration name: (_) @name) @def.class
(class name: (_) @name) @def.class
(method_definition name: (_) @name) @def.method
(object (pair key: (property_identifier) @name
              value: [(function_expression) (arrow_function) (generator_function)] @value) @local.method)
(function_expression name: (identifier) @name) @def.function
(lexical_declaration "const"
  (variable_declarator name: (identifier) @name value: (_)? @value)) @local.const
(lexical_declaration
  (variable_declarator name: (identifier) @name value: (_)? @value)) @local.variable
(variable_declaration
  (variable_declarator name: (identifier) @name value: (_)? @value)) @local.variable
(expression_statement
  (assignment_expression
    left: (member_expression
      object: (member_expression object: (identifier) @recv
                                 property: (property_identifier) @is.prototype)
      property: (property_identifier) @name)
    right: [(function_expression) (arrow_function) (generator_function)] @value)) @def.method
(assignment_expression
  left: (member_expression object: (identifier) @recv property: (property_identifier) @name)
  right: [(function_expression) (arrow_function) (generator_function) (class)] @value) @def.function
(assignment_expression
  left: (member_expression object: (identifier) @recv property: (property_identifier) @name)
  right: (assignment_expression
    right: [(function_expression) (arrow_function) (generator_function)] @value)) @def.function
(function_expression !name) @scope
(arrow_function) @scope
(import_statement source: (string) @import)
(export_statement source: (string) @import)
(call_expression function: (identifier) @is.require arguments: (arguments . (string) @import))
(call_expression function: (import) arguments: (arguments . (string) @import))
"""

_JAVASCRIPT = (
    _ECMA_COMMON
    + r"""
(field_definition property: (_) @name) @def.field
"""
)

_TYPESCRIPT = (
    _ECMA_COMMON
    + r"""
(abstract_class_declaration name: (_) @name) @def.class
(interface_declaration name: (_) @name) @def.interface
(type_alias_declaration name: (_) @name) @def.type
(enum_declaration name: (_) @name) @def.enum
(enum_body name: (property_identifier) @name @def.enum_member)
(enum_assignment name: (property_identifier) @name) @def.enum_member
(internal_module name: (_) @name) @def.module
(module name: (_) @name) @def.module
(function_signature name: (identifier) @name) @def.function
(method_signature name: (_) @name) @def.method
(abstract_method_signature name: (_) @name) @def.method
(public_field_definition name: (_) @name) @def.field
(method_definition
  name: (property_identifier) @is.constructor
  parameters: (formal_parameters
    [(required_parameter
       [(accessibility_modifier) (override_modifier) "readonly"] pattern: (identifier) @name)
     (optional_parameter
       [(accessibility_modifier) (override_modifier) "readonly"] pattern: (identifier) @name)]
    @def.field @hoist))
(property_signature name: (_) @name) @def.field
(import_require_clause source: (string) @import)
"""
)

_GO = r"""
(package_clause (package_identifier) @name) @def.package
(function_declaration name: (identifier) @name) @def.function
(method_declaration
  receiver: (parameter_list (parameter_declaration type: (_) @recv))
  name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (struct_type)) @def.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(type_spec name: (type_identifier) @name) @def.type
(type_alias name: (type_identifier) @name) @def.type
(method_elem name: (field_identifier) @name) @def.method
(field_declaration name: (field_identifier) @name) @def.field
(field_declaration !name type: (_) @embed) @def.field
(const_spec name: (identifier) @name) @local.const
(var_spec name: (identifier) @name) @local.variable
(import_spec path: (_) @import)
"""

_RUST = r"""
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(union_item name: (type_identifier) @name) @def.union
(enum_item name: (type_identifier) @name) @def.enum
(enum_variant name: (identifier) @name) @def.enum_member
(trait_item name: (type_identifier) @name) @def.trait
(impl_item type: (_) @recv) @def.impl
(type_item name: (type_identifier) @name) @def.type
(associated_type name: (type_identifier) @name) @def.type
(const_item name: (identifier) @name) @local.const
(static_item name: (identifier) @name) @local.variable
(mod_item name: (identifier) @name) @def.module
(macro_definition name: (identifier) @name) @def.macro
(field_declaration name: (field_identifier) @name) @def.field
(use_declaration argument: (_) @import)
(extern_crate_declaration name: (identifier) @import)
"""

_JAVA = r"""
(package_declaration [(identifier) (scoped_identifier)] @name) @def.package
(class_declaration name: (identifier) @name) @def.class
(record_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(annotation_type_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.enum
(enum_constant name: (identifier) @name) @def.enum_member
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.method
(compact_constructor_declaration name: (identifier) @name) @def.method
(annotation_type_element_declaration name: (identifier) @name) @def.method
(field_declaration declarator: (variable_declarator name: (identifier) @name)) @def.field
(constant_declaration declarator: (variable_declarator name: (identifier) @name)) @def.field
(import_declaration) @import
"""

_C = r"""
(function_definition declarator: (_) @decl) @def.function
(struct_specifier name: (type_identifier) @name body: (field_declaration_list)) @def.struct
(union_specifier name: (type_identifier) @name body: (field_declaration_list)) @def.union
(enum_specifier name: (type_identifier) @name body: (enumerator_list)) @def.enum
(enumerator name: (identifier) @name) @def.enum_member
(type_definition declarator: (_) @decl) @def.type
(field_declaration declarator: (_) @decl) @def.field
(declaration declarator: (_) @decl) @local.variable
(preproc_def name: (identifier) @name) @def.macro
(preproc_function_def name: (identifier) @name) @def.macro
(preproc_include path: (_) @import)
"""

QUERIES: dict[str, str] = {
    "python": _PYTHON,
    "javascript": _JAVASCRIPT,
    "typescript": _TYPESCRIPT,
    "tsx": _TYPESCRIPT,
    "go": _GO,
    "rust": _RUST,
    "java": _JAVA,
    "c": _C,
}
