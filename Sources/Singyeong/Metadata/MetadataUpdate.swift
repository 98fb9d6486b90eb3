/// A validated UPDATE_METADATA (or identify `metadata`) object: only values
/// that passed their type's validation, no reserved keys. Only
/// `validate(_:)` creates one, so `ClientMetadata.apply` can trust it.
struct MetadataUpdate: Sendable, Equatable {
    /// One accepted entry; `value` is already in stored form (a `float`
    /// given as an integer is a double here).
    struct Entry: Sendable, Equatable {
        let key: String
        let type: MetadataType
        let value: Value
        /// Stored size (`MetadataBudget.entryCost`).
        let cost: Int

        init(key: String, type: MetadataType, value: Value) {
            self.key = key
            self.type = type
            self.value = value
            cost = MetadataBudget.entryCost(key: key, value: value)
        }
    }

    private(set) var entries: [Entry]

    fileprivate init(entries: [Entry]) { self.entries = entries }

    /// Validates the whole object all-or-nothing (`protocol.md` §7.3, §6.3):
    /// either every entry is acceptable, or the failure lists one message per
    /// failing key, in the object's member order.
    ///
    /// Per entry, in this order: not an object with both `type` and `value`
    /// → entry message; `type` not a known type name (a non-string `type`
    /// counts as unknown and is rendered as compact JSON for scalars, `[...]`
    /// / `{...}` for containers) → type message; reserved key → forbidden;
    /// value rejected by the type (`null` always is) → value message.
    static func validate(_ value: Value) -> Result<MetadataUpdate, MetadataValidationFailure> {
        guard case .object(let object) = value else { return .failure(.notAnObject) }
        var accepted: [Entry] = []
        accepted.reserveCapacity(object.count)
        var errors: [MetadataKeyError] = []
        for (key, raw) in object.members {
            guard case .object(let entry) = raw, let typeValue = entry["type"], let entryValue = entry["value"] else {
                errors.append(MetadataKeyError(key: key, message: "\(key): entry must be an object with type and value"))
                continue
            }
            guard case .string(let typeName) = typeValue, let type = MetadataType(rawValue: typeName) else {
                errors.append(MetadataKeyError(key: key, message: "\(key): type '\(renderTypeForMessage(typeValue))' doesn't exists"))
                continue
            }
            if ClientMetadata.isReserved(key) {
                errors.append(MetadataKeyError(key: key, message: "\(key): forbidden metadata key"))
                continue
            }
            guard let stored = type.validate(entryValue) else {
                errors.append(MetadataKeyError(key: key, message: "\(key): value fails validation for '\(type.rawValue)'"))
                continue
            }
            accepted.append(Entry(key: key, type: type, value: stored))
        }
        if !errors.isEmpty { return .failure(.invalidEntries(errors)) }
        return .success(MetadataUpdate(entries: accepted))
    }
}

/// One key's validation message (the text includes the key, as the
/// original's messages did).
struct MetadataKeyError: Sendable, Equatable {
    let key: String
    let message: String
}

/// Why an update was rejected; `extraInfo` is what goes into op 3
/// `invalid metadata` (or the fatal identify error's `extra_info`).
enum MetadataValidationFailure: Error, Sendable, Equatable {
    /// The update (`d`) was not a JSON object.
    case notAnObject
    /// One message per failing key, in member order.
    case invalidEntries([MetadataKeyError])

    /// The error map as an ordered list (empty for `.notAnObject`).
    var errors: [MetadataKeyError] {
        if case .invalidEntries(let e) = self { return e }
        return []
    }

    /// `"metadata update must be an object"` or the `{key: message}` map.
    var extraInfo: Value {
        switch self {
        case .notAnObject:
            return .string("metadata update must be an object")
        case .invalidEntries(let errors):
            return Self.errorMap(errors)
        }
    }

    /// Turns an ordered error list into the `{"<key>": "<message>"}` object.
    static func errorMap(_ errors: [MetadataKeyError]) -> Value {
        var object = ValueObject()
        for e in errors { object[e.key] = .string(e.message) }
        return .object(object)
    }
}

/// How a non-string `type` appears inside `type '<type>' doesn't exists`.
private func renderTypeForMessage(_ value: Value) -> String {
    switch value {
    case .null: return "null"
    case .bool(let b): return b ? "true" : "false"
    case .int(let i): return String(i)
    case .uint(let u): return String(u)
    case .double(let d): return d.description
    case .string(let s): return s
    case .array: return "[...]"
    case .object: return "{...}"
    }
}
