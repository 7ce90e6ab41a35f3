//! Procedural macros of `oect-plugin-api`; plugin authors use them through that crate
//! (`oect_plugin_api::{extractor, Params, Choice}`), which also documents them.
//!
//! The generated code names everything through `::oect_plugin_api::__private`, so a
//! plugin needs no other dependency and nothing of abi_stable shows in its source.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    parenthesized, parse_macro_input, Attribute, Data, DeriveInput, Error, Expr, ExprLit, Fields,
    FnArg, Ident, ItemFn, Lit, LitStr, Pat, ReturnType, Token, Type,
};

/// See `oect_plugin_api::extractor`.
#[proc_macro_attribute]
pub fn extractor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = parse_macro_input!(attr as ExtractorAttr);
    let func = parse_macro_input!(item as ItemFn);
    expand_extractor(attr, func)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// See `oect_plugin_api::Params`.
#[proc_macro_derive(Params, attributes(param))]
pub fn derive_params(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_params(input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// See `oect_plugin_api::Choice`.
#[proc_macro_derive(Choice, attributes(choice))]
pub fn derive_choice(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_choice(input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

// ---- #[extractor] ------------------------------------------------------------------------------

/// `key = value` or `key(...)`.
struct AttrItem {
    key: Ident,
    value: AttrValue,
}

enum AttrValue {
    Flag,
    Expr(Expr),
    /// The tokens inside `key( ... )`, parsed later by what the key means.
    Group(TokenStream2),
}

impl Parse for AttrItem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            AttrValue::Expr(input.parse()?)
        } else if input.peek(syn::token::Paren) {
            let content;
            parenthesized!(content in input);
            AttrValue::Group(content.parse()?)
        } else {
            AttrValue::Flag
        };
        Ok(AttrItem { key, value })
    }
}

struct ExtractorAttr {
    name: LitStr,
    unit: LitStr,
    shape: Option<Expr>,
    examples: Vec<ExampleAttr>,
}

impl Parse for ExtractorAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let items = Punctuated::<AttrItem, Token![,]>::parse_terminated(input)?;
        let (mut name, mut unit, mut shape, mut examples) = (None, None, None, Vec::new());
        for item in items {
            let key = item.key.to_string();
            match (key.as_str(), item.value) {
                ("name", AttrValue::Expr(e)) => name = Some(lit_str(&e)?),
                ("unit", AttrValue::Expr(e)) => unit = Some(lit_str(&e)?),
                ("shape", AttrValue::Expr(e)) => shape = Some(e),
                ("example", AttrValue::Group(tokens)) => {
                    examples.push(syn::parse2::<ExampleAttr>(tokens)?)
                }
                _ => return Err(Error::new(
                    item.key.span(),
                    "expected `name = \"namespace.feature\"`, `unit = \"...\"`, `shape = [...]` \
                         or `example(...)`",
                )),
            }
        }
        let name = name.ok_or_else(|| {
            Error::new(Span::call_site(), "missing `name = \"namespace.feature\"`")
        })?;
        let unit = unit.ok_or_else(|| {
            Error::new(
                Span::call_site(),
                "missing `unit = \"...\"` (use \"\" for a ratio)",
            )
        })?;
        Ok(ExtractorAttr {
            name,
            unit,
            shape,
            examples,
        })
    }
}

/// `example("what it shows", vg = [..], id = [..], params(k = v), context(k = v),
/// output = expr, tolerance = x)`; `no_result` or `fails = kind` instead of `output`.
struct ExampleAttr {
    description: LitStr,
    fields: Vec<(Ident, Expr)>,
    params: Vec<(Ident, Expr)>,
    context: Vec<(Ident, Expr)>,
    expected: Expected,
    tolerance: Option<Expr>,
    span: Span,
}

enum Expected {
    Output(Expr),
    Failure(Ident),
}

fn assignments(tokens: TokenStream2) -> syn::Result<Vec<(Ident, Expr)>> {
    Ok(syn::parse2::<Assignments>(tokens)?.0)
}

struct Assignments(Vec<(Ident, Expr)>);

impl Parse for Assignments {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            out.push((key, input.parse()?));
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Assignments(out))
    }
}

impl Parse for ExampleAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let span = input.span();
        let description: LitStr = input.parse()?;
        let (mut fields, mut params, mut context) = (Vec::new(), Vec::new(), Vec::new());
        let (mut expected, mut tolerance) = (None, None);
        if input.is_empty() {
            return Err(Error::new(
                span,
                "an example needs its inputs and `output = ...`",
            ));
        }
        input.parse::<Token![,]>()?;
        let items = Punctuated::<AttrItem, Token![,]>::parse_terminated(input)?;
        for item in items {
            let key = item.key.to_string();
            match (key.as_str(), item.value) {
                ("params", AttrValue::Group(t)) => params = assignments(t)?,
                ("context", AttrValue::Group(t)) => context = assignments(t)?,
                ("output", AttrValue::Expr(e)) => expected = Some(Expected::Output(e)),
                ("no_result", AttrValue::Flag) => {
                    expected = Some(Expected::Failure(Ident::new("NoResult", item.key.span())))
                }
                ("fails", AttrValue::Expr(Expr::Path(p))) if p.path.get_ident().is_some() => {
                    let kind = p.path.get_ident().expect("checked").clone();
                    expected = Some(Expected::Failure(failure_kind(&kind)?))
                }
                ("tolerance", AttrValue::Expr(e)) => tolerance = Some(e),
                (_, AttrValue::Expr(e)) => fields.push((item.key, e)),
                _ => {
                    return Err(Error::new(
                        item.key.span(),
                        "expected a view field (`vg = [...]`), `params(...)`, `context(...)`, \
                         `output = ...`, `no_result`, `fails = <kind>` or `tolerance = ...`",
                    ))
                }
            }
        }
        let expected = expected.ok_or_else(|| {
            Error::new(
                span,
                "the example says nothing about its result: add `output = ...`",
            )
        })?;
        Ok(ExampleAttr {
            description,
            fields,
            params,
            context,
            expected,
            tolerance,
            span,
        })
    }
}

/// `invalid_input` → `InvalidInput`, for `fails = ...`.
fn failure_kind(name: &Ident) -> syn::Result<Ident> {
    let variant = match name.to_string().as_str() {
        "invalid_input" => "InvalidInput",
        "no_result" => "NoResult",
        "panic" => "Panic",
        _ => {
            return Err(Error::new(
                name.span(),
                "an example can expect `invalid_input`, `no_result` or `panic`",
            ))
        }
    };
    Ok(Ident::new(variant, name.span()))
}

fn lit_str(e: &Expr) -> syn::Result<LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.clone()),
        other => Err(Error::new(other.span(), "expected a string literal")),
    }
}

/// The text of `///` comments: paragraphs joined into lines, first paragraph first.
fn doc_paragraphs(attrs: &[Attribute]) -> Vec<String> {
    let mut paragraphs = vec![String::new()];
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        let syn::Meta::NameValue(nv) = &attr.meta else {
            continue;
        };
        let Ok(text) = lit_str(&nv.value) else {
            continue;
        };
        let line = text.value();
        let line = line.trim();
        let last = paragraphs.last_mut().expect("one paragraph");
        if line.is_empty() {
            if !last.is_empty() {
                paragraphs.push(String::new());
            }
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs
}

/// Replaces every lifetime (named or elided) by `'static`, for constant contexts.
struct StaticLifetimes;

impl VisitMut for StaticLifetimes {
    fn visit_lifetime_mut(&mut self, lt: &mut syn::Lifetime) {
        *lt = syn::Lifetime::new("'static", lt.span());
    }
}

fn with_static_lifetimes(ty: &Type) -> Type {
    let mut ty = ty.clone();
    StaticLifetimes.visit_type_mut(&mut ty);
    ty
}

/// The type's path without generic arguments, for a struct literal.
fn struct_path(ty: &Type) -> Option<syn::Path> {
    let Type::Path(p) = ty else { return None };
    let mut path = p.path.clone();
    for seg in &mut path.segments {
        seg.arguments = syn::PathArguments::None;
    }
    Some(path)
}

fn expand_extractor(attr: ExtractorAttr, func: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        return Err(Error::new(
            sig.generics.span(),
            "an extractor function takes no generic parameters",
        ));
    }
    if sig.asyncness.is_some() || sig.unsafety.is_some() {
        return Err(Error::new(sig.span(), "an extractor is a plain `fn`"));
    }
    let fn_name = &sig.ident;
    let mut params_ty: Option<Type> = None;
    let mut params_pat: Option<Pat> = None;
    let mut step_args: Vec<Type> = Vec::new();
    let mut call_args = Vec::new();
    for arg in &sig.inputs {
        let FnArg::Typed(arg) = arg else {
            return Err(Error::new(arg.span(), "an extractor is a free function"));
        };
        match &*arg.ty {
            Type::Reference(r) => {
                if params_ty.is_some() {
                    return Err(Error::new(
                        arg.span(),
                        "only the parameter struct is taken by reference, and only once",
                    ));
                }
                if r.mutability.is_some() {
                    return Err(Error::new(arg.span(), "take the parameters as `&Params`"));
                }
                params_ty = Some((*r.elem).clone());
                params_pat = Some((*arg.pat).clone());
                call_args.push(quote! { &self.0 });
            }
            ty => {
                let var = quote::format_ident!("__arg{}", step_args.len());
                step_args.push(ty.clone());
                call_args.push(quote! { #var });
            }
        }
    }
    if step_args.is_empty() {
        return Err(Error::new(
            sig.inputs.span(),
            "an extractor takes a step view (`Transfer`, `Transient`, `Current` or `Features`) first",
        ));
    }
    let params_ty = params_ty.unwrap_or_else(|| syn::parse_quote!(()));
    let ret: Type =
        match &sig.output {
            ReturnType::Type(_, ty) => (**ty).clone(),
            ReturnType::Default => return Err(Error::new(
                sig.span(),
                "an extractor returns its value (`f64`, `Option<f64>`, `[f64; N]`, `Vec<f64>`, …)",
            )),
        };
    let ret_static = with_static_lifetimes(&ret);

    let name = &attr.name;
    let unit = &attr.unit;
    let description = doc_paragraphs(&func.attrs)
        .into_iter()
        .next()
        .unwrap_or_default();

    let bind_params = match &params_pat {
        Some(pat) => quote! {
            #[allow(unused_variables)]
            let #pat = &self.0;
        },
        None => quote! {},
    };
    let (shape, rank_check) = match &attr.shape {
        None => (
            quote_spanned! {ret.span()=> <#ret as __oect::KnownShape>::shape() },
            quote! {},
        ),
        Some(Expr::Array(list)) => {
            let dims = list.elems.iter().map(|e| match e {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(n), ..
                }) => quote! { __oect::Dim::Fixed(#n) },
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => quote! { __oect::Dim::Dyn(#s.into()) },
                e => quote! { __oect::Dim::Fixed((#e) as u64) },
            });
            let rank = list.elems.len();
            (
                quote! { ::std::vec![#(#dims),*] },
                quote_spanned! {list.span()=>
                    const _: () = ::core::assert!(
                        __oect::rank_fits(<#ret_static as __oect::IntoStepValue>::RANK, #rank),
                        "the declared shape has another rank than the returned type"
                    );
                },
            )
        }
        Some(e) => (quote! { #e }, quote! {}),
    };

    let step_statics: Vec<Type> = step_args.iter().map(with_static_lifetimes).collect();
    let arg_vars: Vec<Ident> = (0..step_args.len())
        .map(|k| quote::format_ident!("__arg{}", k))
        .collect();

    let examples = attr
        .examples
        .iter()
        .map(|ex| expand_example(ex, &step_args[0], &params_ty))
        .collect::<syn::Result<Vec<_>>>()?;

    Ok(quote! {
        #func

        const _: () = {
            use ::oect_plugin_api::__private as __oect;

            const _: () = ::core::assert!(
                __oect::one_view(&[#(<#step_statics as __oect::View>::INPUT.is_some()),*]),
                "an extractor takes exactly one step view (`Transfer`, `Transient`, `Current` or `Features`)"
            );
            #rank_check

            struct __Extractor(#params_ty);

            impl __oect::Run for __Extractor {
                fn shape(&self) -> ::std::vec::Vec<__oect::Dim> {
                    #bind_params
                    #shape
                }

                fn call(
                    &self,
                    input: &__oect::StepInput<'_>,
                ) -> ::core::result::Result<__oect::FeatureValue, __oect::StepFailure> {
                    #(let #arg_vars = <#step_args as __oect::FromStep>::from_step(input)?;)*
                    __oect::IntoStepValue::into_step_value(#fn_name(#(#call_args),*))
                }
            }

            fn __describe() -> __oect::ExtractorInfo {
                __oect::describe::<#params_ty>(
                    #name,
                    &[#((<#step_statics as __oect::View>::INPUT, <#step_statics as __oect::View>::CHANNELS)),*],
                    #description,
                    #unit,
                    ::std::vec![#(#examples),*],
                )
            }

            fn __create(
                params: &__oect::serde_json::Value,
            ) -> ::core::result::Result<::std::boxed::Box<dyn __oect::Run>, ::std::string::String> {
                let params = <#params_ty as __oect::Params>::from_json(params)?;
                ::core::result::Result::Ok(::std::boxed::Box::new(__Extractor(params)))
            }

            __oect::inventory::submit! {
                __oect::Registration { name: #name, describe: __describe, create: __create }
            }
        };
    })
}

fn expand_example(ex: &ExampleAttr, view: &Type, params_ty: &Type) -> syn::Result<TokenStream2> {
    let description = &ex.description;
    let view_path =
        struct_path(view).ok_or_else(|| Error::new(ex.span, "unsupported step view"))?;
    let fields = ex.fields.iter().map(|(k, v)| quote! { #k: &#v });
    let params = ex.params.iter().map(|(k, v)| quote! { __params.#k = #v; });
    let settings = ex
        .context
        .iter()
        .map(|(k, v)| quote! { __settings.#k = ::core::option::Option::Some(#v).into(); });
    let tolerance = match &ex.tolerance {
        Some(t) => quote! { #t },
        None => quote! { __oect::DEFAULT_TOLERANCE },
    };
    let expected = match &ex.expected {
        Expected::Output(e) => quote! { __oect::expect_value(#e, #tolerance) },
        Expected::Failure(kind) => {
            quote! { __oect::Expected::Failure(__oect::FailureKind::#kind) }
        }
    };
    Ok(quote_spanned! {ex.span=> {
        let __view = #view_path { #(#fields),* };
        #[allow(unused_mut, clippy::let_unit_value)]
        let mut __params = <#params_ty as ::core::default::Default>::default();
        #(#params)*
        #[allow(unused_mut)]
        let mut __settings = __oect::StepSettings::default();
        #(#settings)*
        __oect::example(#description, &__params, __oect::ExampleView::arrays(&__view), __settings, #expected)
    }})
}

// ---- #[derive(Params)] -------------------------------------------------------------------------

struct FieldSpec {
    ident: Ident,
    name: String,
    ty: Type,
    default: TokenStream2,
    doc: String,
    min: TokenStream2,
    max: TokenStream2,
}

/// Whether `ty` is written `Option<T>`.
fn is_option(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    p.qself.is_none()
        && p.path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Option" && !s.arguments.is_empty())
}

fn bound(value: &Expr, inclusive: bool) -> TokenStream2 {
    quote! { ::core::option::Option::Some(__oect::Bound { value: (#value) as f64, inclusive: #inclusive }) }
}

fn field_spec(field: &syn::Field) -> syn::Result<FieldSpec> {
    let ident = field.ident.clone().expect("named field");
    let name = ident.to_string().trim_start_matches("r#").to_string();
    let mut default = None;
    let none = quote! { ::core::option::Option::None };
    let (mut min, mut max) = (none.clone(), none.clone());
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("param")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                default = Some(if meta.input.peek(Token![=]) {
                    let e: Expr = meta.value()?.parse()?;
                    quote! { #e }
                } else {
                    quote! { ::core::default::Default::default() }
                });
            } else if meta.path.is_ident("min") {
                min = bound(&meta.value()?.parse()?, true);
            } else if meta.path.is_ident("max") {
                max = bound(&meta.value()?.parse()?, true);
            } else if meta.path.is_ident("positive") {
                min = bound(&syn::parse_quote!(0.0), false);
            } else {
                return Err(meta.error(
                    "expected `default`, `default = ...`, `min = ...`, `max = ...` or `positive`",
                ));
            }
            Ok(())
        })?;
    }
    let default = match default {
        Some(d) => d,
        None if is_option(&field.ty) => quote! { ::core::option::Option::None },
        None => {
            return Err(Error::new(
                ident.span(),
                format!(
                    "parameter `{name}` needs a default: `#[param(default = ...)]` (or make it an `Option`)"
                ),
            ))
        }
    };
    Ok(FieldSpec {
        doc: doc_paragraphs(&field.attrs).join(" "),
        ident,
        name,
        ty: field.ty.clone(),
        default,
        min,
        max,
    })
}

fn expand_params(input: DeriveInput) -> syn::Result<TokenStream2> {
    let ty = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "a parameter struct takes no generic parameters",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(Error::new(
            input.span(),
            "#[derive(Params)] is for a struct with named fields",
        ));
    };
    let fields: Vec<FieldSpec> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(field_spec)
            .collect::<syn::Result<_>>()?,
        Fields::Unit => Vec::new(),
        Fields::Unnamed(f) => {
            return Err(Error::new(
                f.span(),
                "parameters are named fields: `struct P { window: usize }`",
            ))
        }
    };
    let idents: Vec<&Ident> = fields.iter().map(|f| &f.ident).collect();
    let names: Vec<&String> = fields.iter().map(|f| &f.name).collect();
    let tys: Vec<&Type> = fields.iter().map(|f| &f.ty).collect();
    let defaults: Vec<&TokenStream2> = fields.iter().map(|f| &f.default).collect();
    let docs: Vec<&String> = fields.iter().map(|f| &f.doc).collect();
    let mins: Vec<&TokenStream2> = fields.iter().map(|f| &f.min).collect();
    let maxs: Vec<&TokenStream2> = fields.iter().map(|f| &f.max).collect();
    let construct = if matches!(data.fields, Fields::Unit) {
        quote! { #ty }
    } else {
        quote! { #ty { #(#idents: #defaults),* } }
    };
    let parse = if matches!(data.fields, Fields::Unit) {
        quote! { #ty }
    } else {
        quote! {
            #ty { #(#idents: __oect::param_field::<#tys>(__map, #names, || #defaults, #mins, #maxs)?),* }
        }
    };
    Ok(quote! {
        const _: () = {
            use ::oect_plugin_api::__private as __oect;

            impl ::core::default::Default for #ty {
                fn default() -> Self {
                    #construct
                }
            }

            impl __oect::Params for #ty {
                fn describe() -> ::std::vec::Vec<__oect::ParamInfo> {
                    let __defaults = <Self as ::core::default::Default>::default();
                    ::std::vec![#(__oect::param_info::<#tys>(#names, &__defaults.#idents, #docs, #mins, #maxs)),*]
                }

                fn from_json(
                    given: &__oect::serde_json::Value,
                ) -> ::core::result::Result<Self, ::std::string::String> {
                    let __map = __oect::param_object(given, &[#(#names),*])?;
                    let _ = &__map;
                    ::core::result::Result::Ok(#parse)
                }

                fn to_json(&self) -> __oect::serde_json::Map<::std::string::String, __oect::serde_json::Value> {
                    #[allow(unused_mut)]
                    let mut __map = __oect::serde_json::Map::new();
                    #(__map.insert(#names.into(), __oect::ParamValue::to_json(&self.#idents));)*
                    __map
                }
            }
        };
    })
}

// ---- #[derive(Choice)] -------------------------------------------------------------------------

/// `PeakDetection` → `peak_detection`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn expand_choice(input: DeriveInput) -> syn::Result<TokenStream2> {
    let ty = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(Error::new(
            input.span(),
            "#[derive(Choice)] is for an enum of unit variants",
        ));
    };
    let mut variants = Vec::new();
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(Error::new(v.span(), "a choice is a unit variant"));
        }
        let mut names: Vec<LitStr> = Vec::new();
        for attr in v.attrs.iter().filter(|a| a.path().is_ident("choice")) {
            let list = attr.parse_args_with(Punctuated::<LitStr, Token![,]>::parse_terminated)?;
            names.extend(list);
        }
        if names.is_empty() {
            names.push(LitStr::new(
                &snake_case(&v.ident.to_string()),
                v.ident.span(),
            ));
        }
        variants.push((v.ident.clone(), names));
    }
    let all: Vec<&LitStr> = variants.iter().flat_map(|(_, n)| n).collect();
    let arms = variants.iter().map(|(ident, names)| {
        quote! { #(::core::option::Option::Some(#names))|* => ::core::result::Result::Ok(#ty::#ident), }
    });
    let canonical = variants.iter().map(|(ident, names)| {
        let first = &names[0];
        quote! { #ty::#ident => #first, }
    });
    Ok(quote! {
        const _: () = {
            use ::oect_plugin_api::__private as __oect;

            impl __oect::ParamValue for #ty {
                fn kind() -> __oect::ParamKind {
                    __oect::ParamKind::Choice(::std::vec![#(#all.into()),*].into())
                }

                fn from_json(
                    value: &__oect::serde_json::Value,
                ) -> ::core::result::Result<Self, ::std::string::String> {
                    match value.as_str() {
                        #(#arms)*
                        _ => ::core::result::Result::Err(__oect::expected::<Self>(value)),
                    }
                }

                fn to_json(&self) -> __oect::serde_json::Value {
                    __oect::serde_json::Value::from(match self { #(#canonical)* })
                }
            }
        };
    })
}
